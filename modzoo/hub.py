"""Fetch a pretrained checkpoint listed in modzoo/data/manifest/, verify it, convert it to modzoo's layout.

    python tools/get_checkpoint.py zoo_focalnet_tiny_srf                 # default tag, first live source
    python tools/get_checkpoint.py zoo_focalnet_tiny_srf.ms_in1k --source 1
    python tools/get_checkpoint.py zoo_focalnet_tiny_iso --file ~/Downloads/focalnet_tiny_iso_16.pth --trust-pickle
    python tools/get_checkpoint.py zoo_focalnet_tiny_srf --url file:///data/focalnet_tiny_srf.pth

The file is downloaded (or taken from --file), its sha256 is checked when the manifest or --sha256 gives one, it is
converted through the family's ``checkpoint_filter_fn`` and verified against the model, and the result is written
to ``checkpoints/<model>.<tag>.safetensors``. Load it with::

    timm.create_model('<model>', pretrained=True,
                      pretrained_cfg_overlay=dict(file='checkpoints/<model>.<tag>.safetensors'))

With ``--hf-dir DIR`` it writes a Hugging Face Hub folder instead (``config.json``, ``model.safetensors``, a model card
``README.md``) that ``timm.create_model('local-dir:DIR', pretrained=True)`` loads after ``import modzoo``; the folder
appears whole or not at all, and ``--overwrite`` replaces its model but keeps the user's other files; ``--prefix
backbone.`` takes the backbone of an mmdet/mmseg checkpoint. Offline, the download fails fast with a message saying
how to pass a local file instead.
"""
import argparse
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import string
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Iterator, List, Optional, Sequence

import torch
import timm

import modzoo
from modzoo.models import (
    RECORD_KEY, LoadReport, checkpoint_num_classes, fit_checkpoint, model_record, open_checkpoint, recorded_kwargs,
)
from modzoo.utils.cli import OneLineArgumentParser, UsageError, check_output_dir
from modzoo.utils.files import TMP_SUFFIX, fsync_dir, publish, temporary_beside

__all__ = ['MANIFEST_DIR', 'CheckpointToolError', 'load_manifest', 'resolve_name', 'sha256_of', 'download',
           'fetch', 'convert', 'save_safetensors', 'checkpoint_path',
           'write_hub_folder', 'model_card', 'run', 'build_parser', 'main']

MANIFEST_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'manifest')
OFFLINE_ADVICE = '; if this machine is offline, download the file elsewhere and pass it with --file PATH'


class CheckpointToolError(RuntimeError):
    """A failure with a message meant for the user (printed without a traceback, exit code 2)."""


def load_manifest(manifest_dir: str = MANIFEST_DIR) -> dict:
    entries = {}
    for fname in sorted(os.listdir(manifest_dir)):
        if fname.endswith('.json'):
            path = os.path.join(manifest_dir, fname)
            try:
                with open(path) as f:
                    entries.update(json.load(f)['checkpoints'])
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                reason = f'no "checkpoints" mapping ({e})' if not isinstance(e, ValueError) else f'not valid JSON ({e})'
                raise CheckpointToolError(f'manifest {path} is {reason}: fix or remove the file') from None
    return entries


# a tag names a file: letters, digits, `_`, `-` and inner dots only (no separators, nothing that walks up)
_PLAIN_TAG = re.compile(r'[A-Za-z0-9_-][A-Za-z0-9_.-]*')


def resolve_name(name: str, manifest: Optional[dict] = None, own_file: bool = False) -> tuple:
    """'zoo_x' or 'zoo_x.tag' -> (architecture, tag); unknown names get suggestions. The tag must be registered
    (in ``manifest`` or timm's pretrained tags of the model) unless ``own_file`` (--file/--url): a user's own tag
    must then be a plain name."""
    arch, _, tag = name.partition('.')
    if arch not in modzoo.list_models():
        modzoo.create_model(arch)  # raises UnknownModelError with close names
    if not tag:
        tag = timm.models.get_pretrained_cfg(arch).tag
    if not _PLAIN_TAG.fullmatch(tag) or '..' in tag:
        raise CheckpointToolError(f'tag {tag!r} of {name!r} is not a plain name: use letters, digits, _, - and '
                                  f'inner dots only (e.g. {arch}.my_run)')
    registered = {k.partition('.')[2] for k in (manifest or {}) if k.partition('.')[0] == arch}
    registered |= {t.partition('.')[2] for t in timm.list_pretrained(arch)}
    if not own_file and tag not in registered:
        raise CheckpointToolError(f'{arch}.{tag} is not a registered checkpoint. Known tags of {arch}: '
                                  f'{", ".join(sorted(registered)) or "none"}. Pass a local file with --file PATH '
                                  f'to convert one under a tag of your own.')
    return arch, tag


def checkpoint_path(out_dir: str, arch: str, tag: str) -> str:
    """``OUT_DIR/<arch>.<tag>.safetensors``, refused unless it lies directly inside ``out_dir``."""
    dest = os.path.join(out_dir, f'{arch}.{tag}.safetensors')
    if os.path.realpath(os.path.dirname(dest)) != os.path.realpath(out_dir):
        raise CheckpointToolError(f'{arch}.{tag} would be written outside --out-dir {out_dir}: pass a plain tag')
    return dest


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest_dir: str, timeout: float) -> str:
    """Stream ``url`` to a file in ``dest_dir`` (atomic: a .part file renamed when complete)."""
    created = _make_dirs(dest_dir)
    name = os.path.basename(urllib.request.url2pathname(url.split('?')[0])) or 'checkpoint.bin'
    dest = os.path.join(dest_dir, name)
    part = dest + '.part'
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, 'wb') as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except ValueError:  # urllib's answer to a string without a scheme
        _remove_empty(created)
        raise CheckpointToolError(f'{url} is not a URL: pass http(s)://... or file:///..., or a local file with '
                                  f'--file PATH') from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
        if os.path.exists(part):
            os.remove(part)
        _remove_empty(created)
        reason = getattr(e, 'reason', e)
        raise CheckpointToolError(
            f'could not download {url}: {reason}{OFFLINE_ADVICE}') from None
    os.replace(part, dest)
    return dest


def _make_dirs(path: str) -> list:
    """Create ``path`` and its missing parents; returns the folders created, deepest first."""
    created = []
    path = os.path.abspath(path)
    while path and not os.path.exists(path):
        created.append(path)
        path = os.path.dirname(path)
    os.makedirs(created[0] if created else '.', exist_ok=True)
    return created


def _remove_empty(created: list) -> None:
    """Remove the folders a failed download created, if they stayed empty."""
    for folder in created:
        try:
            os.rmdir(folder)
        except OSError:
            break


def download_hf(repo_id: str, filename: str, timeout: float) -> str:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise CheckpointToolError('huggingface_hub is needed for hub sources: pip install huggingface_hub') from e
    os.environ.setdefault('HF_HUB_ETAG_TIMEOUT', str(int(timeout)))
    os.environ.setdefault('HF_HUB_DOWNLOAD_TIMEOUT', str(int(timeout)))
    try:
        return hf_hub_download(repo_id, filename)
    except Exception as e:  # the hub client raises several connection/offline error types
        raise CheckpointToolError(
            f'could not fetch {filename} from the Hugging Face hub repo {repo_id}: {type(e).__name__}: '
            f'{str(e).splitlines()[0] if str(e) else ""}{OFFLINE_ADVICE}') from None


def fetch(entry: dict, args) -> tuple:
    """Return (local path, source description, expected sha256 or None)."""
    if args.file:
        if not os.path.isfile(args.file):
            raise CheckpointToolError(f'no file at {args.file}')
        return args.file, f'file {args.file}', args.sha256
    if args.url:
        return download(args.url, args.download_dir, args.timeout), args.url, args.sha256
    sources = entry.get('sources', [])
    if args.source is not None:
        if not 0 <= args.source < len(sources):
            raise CheckpointToolError(f'--source {args.source}: this checkpoint has {len(sources)} source(s)')
        sources = [sources[args.source]]
    errors = []
    for src in sources:
        if src.get('status') == 'dead':
            where = src.get('url') or src.get('hf_hub_id')
            errors.append(f'{where}: marked dead in the manifest')
            continue
        if src['kind'] not in ('url', 'hf_hub'):
            where = src.get('url') or src.get('hf_hub_id')
            errors.append(f'{where}: a {src["kind"]} source cannot be downloaded automatically; fetch the file by hand')
            continue
        try:
            if src['kind'] == 'hf_hub':
                path = download_hf(src['hf_hub_id'], src.get('filename', 'model.safetensors'), args.timeout)
                where = f'hf-hub:{src["hf_hub_id"]}'
            else:
                path = download(src['url'], args.download_dir, args.timeout)
                where = src['url']
            return path, where, args.sha256 or src.get('sha256')
        except CheckpointToolError as e:
            errors.append(str(e).replace(OFFLINE_ADVICE, ''))
    raise CheckpointToolError(
        'no source could be fetched:\n  ' + '\n  '.join(errors or ['the manifest lists no source'])
        + '\nDownload the file yourself and pass it with --file PATH (add --trust-pickle for official .pth files '
          'that pickle config objects).')


def _tag_num_classes(arch: str, tag: str, entry: dict) -> int:
    cfg = timm.models.get_pretrained_cfg(f'{arch}.{tag}')
    return entry.get('num_classes', cfg.num_classes if cfg is not None else 1000)


def convert(arch: str, tag: str, path: str, entry: dict, trusted: bool, allow_non_finite: bool = False,
            prefix: Optional[str] = None) -> tuple:
    """Read, convert and match ``path`` for ``arch.tag``; returns (the load report, the model on the meta device)."""
    ckpt = open_checkpoint(path, trusted=trusted, prefix=prefix)
    # a file that names its model (a training run's best.pth, a modzoo export) is converted for that build
    kwargs = recorded_kwargs(ckpt, arch)
    with torch.device('meta'):  # shapes are all the filter needs; no weight initialisation
        model = timm.create_model(arch, pretrained=False, **kwargs)
        num_classes = _tag_num_classes(arch, tag, entry) if entry else checkpoint_num_classes(model, ckpt.state_dict)
        if num_classes is not None and num_classes != model.num_classes:
            model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **kwargs)
    # a detector/segmentor's backbone (an explicit prefix) has no classification final norm
    report = fit_checkpoint(ckpt, model, allow_non_finite=allow_non_finite, allow_missing=('norm.',) if prefix else (),
                            model_name=f'{arch}.{tag}', non_finite_option='--allow-non-finite',
                            hint=f'The file is not a {arch}.{tag} checkpoint; nothing was written.')
    report.state_dict = {k: v.contiguous() for k, v in report.state_dict.items()}
    return report, model


def save_safetensors(state_dict: dict, dest: str, metadata: dict) -> None:
    """Write atomically, with the permissions of any file the user creates (not the 0600 of a temporary)."""
    from safetensors.torch import save_file
    os.makedirs(os.path.dirname(dest) or '.', exist_ok=True)
    fd, tmp = temporary_beside(dest)
    os.close(fd)
    mode = os.stat(tmp).st_mode & 0o777
    try:
        save_file(state_dict, tmp, metadata={k: str(v) for k, v in metadata.items()})
        os.chmod(tmp, mode)  # safetensors writes a fresh file of mode 0600
        publish(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_hub_folder(folder: str, overwrite: bool) -> None:
    """Refuse a folder that holds files already, unless the user said to overwrite them."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CheckpointToolError(f'--hf-dir {folder} is a file: pass a folder')
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise CheckpointToolError(f'--hf-dir {folder} is not empty: pass an empty or new folder, or --overwrite to '
                                  f'replace its model')


# what a Hub loader reads as a folder's model (timm's preferred weight names, sharded indexes, the config): an
# --overwrite replaces them all, so no old weights stay beside the new ones
_MODEL_FILES = frozenset({
    'config.json', 'model.safetensors', 'pytorch_model.bin', 'pytorch_model.pth', 'model.pth',
    'model.safetensors.index.json', 'pytorch_model.bin.index.json', 'open_clip_model.safetensors',
    'open_clip_pytorch_model.safetensors', 'open_clip_pytorch_model.bin', 'open_clip_pytorch_model.pth'})
_CARD_MARK = re.compile(r'<!-- modzoo model card sha256:([0-9a-f]{64}) -->\n?\Z')


def write_hub_folder(folder: str, report: LoadReport, model, record: dict, source: str = '',
                     license: Optional[str] = None, overwrite: bool = False) -> List[str]:
    """Write timm's Hub layout: what ``push_to_hf_hub`` uploads (``config.json`` and ``model.safetensors`` from
    timm's own ``save_for_hf``), the model record in the safetensors metadata, and a model card ``README.md``.
    ``report``: :func:`convert`'s (its tensors fit ``model``, layers it lacks keep their initialisation).

    The folder appears whole or not at all: the files are written into a hidden sibling folder that takes the
    folder's place in one rename, under a lock that refuses a second writer. With
    ``overwrite`` the old model's files go (:data:`_MODEL_FILES`) and the user's other files stay, a README.md of
    their own included (the model card is then not written). Returns notes for the user (what was kept)."""
    folder = os.path.realpath(folder)  # a symlinked folder is written where it points
    with _writer_lock(folder):
        check_hub_folder(folder, overwrite)  # again under the lock: another writer may have finished meanwhile
        staging = _writable(tempfile.mkdtemp, folder, prefix=f'.{os.path.basename(folder)}.', suffix=TMP_SUFFIX,
                            dir=os.path.dirname(folder))
        try:
            notes = _carry_user_files(folder, staging)
            card = None if os.path.lexists(os.path.join(staging, 'README.md')) else model_card(
                record, source, license, report)
            _write_model_files(staging, report, model, record, card)
            _put_in_place(staging, folder)
        finally:
            if os.path.lexists(staging):
                shutil.rmtree(staging)
    return notes


def _writable(make, folder: str, *args, **kwargs):
    """``make(*args, **kwargs)`` beside ``folder``, or one line saying the place cannot be written."""
    try:
        return make(*args, **kwargs)
    except OSError as e:
        raise CheckpointToolError(f'--hf-dir {folder}: cannot write there ({e.strerror}): pass a writable '
                                  f'folder') from None


def _write_model_files(staging: str, report: LoadReport, model, record: dict, card: Optional[str]) -> None:
    from safetensors.torch import save_file
    from timm.models import save_for_hf
    arch, tag = record['architecture'], record.get('tag')
    built = timm.create_model(arch, pretrained=False, num_classes=model.num_classes, **record.get('kwargs', {}))
    if tag:
        built.pretrained_cfg = dict(built.pretrained_cfg, tag=tag)
    built.load_state_dict(report.state_dict, strict=False)
    save_for_hf(built, staging, model_args=record.get('kwargs') or None, safe_serialization=True)
    tensors = {k: v.contiguous() for k, v in built.state_dict().items()}  # again, with the record in its header
    save_file(tensors, os.path.join(staging, 'model.safetensors'),
              metadata={'format': 'pt', RECORD_KEY: json.dumps(record)})
    if card is not None:
        with open(os.path.join(staging, 'README.md'), 'w') as f:
            f.write(f'{card}<!-- modzoo model card sha256:{_digest(card)} -->\n')
    os.chmod(staging, 0o777 & ~_umask())


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _is_tool_card(path: str) -> bool:
    """README.md is the model card this tool wrote, unedited (its last line holds the digest of the rest)."""
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return False
    mark = _CARD_MARK.search(text)
    return bool(mark) and _digest(text[:mark.start()]) == mark.group(1)


def _carry_user_files(folder: str, staging: str) -> List[str]:
    """Link (or copy) into ``staging`` the files of ``folder`` that are not its model; returns notes."""
    if not os.path.isdir(folder):
        return []
    notes = []
    for name in sorted(os.listdir(folder)):
        src, dst = os.path.join(folder, name), os.path.join(staging, name)
        if name in _MODEL_FILES or (name == 'README.md' and _is_tool_card(src)):
            continue
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        elif os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            _link_or_copy(src, dst)
        if name == 'README.md':
            notes.append('kept your README.md, so no model card was written (move it away to get one)')
    return notes


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _put_in_place(staging: str, folder: str) -> None:
    """``staging`` becomes ``folder`` in one step: a rename over a missing or empty folder, else an exchange of
    the two (Linux ``renameat2``; elsewhere two renames) after which the old folder is removed."""
    fsync_dir(staging)
    try:
        os.rename(staging, folder)
        return
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise CheckpointToolError(f'--hf-dir {folder}: cannot write there ({e.strerror}): pass a writable '
                                      f'folder') from None
    if not _exchange(staging, folder):
        os.rename(folder, staging + '.old')
        os.rename(staging, folder)
        os.rename(staging + '.old', staging)
    shutil.rmtree(staging)  # the old folder
    fsync_dir(os.path.dirname(folder))


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system cannot."""
    import ctypes
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()), b)


@contextlib.contextmanager
def _writer_lock(folder: str) -> Iterator[None]:
    """An exclusive lock on ``.<folder>.lock`` beside the folder (removed when done), or a one-line refusal."""
    _writable(os.makedirs, folder, os.path.dirname(folder), exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not on Windows: the rename still keeps the folder whole
        yield
        return
    path = os.path.join(os.path.dirname(folder), f'.{os.path.basename(folder)}.lock')
    while True:
        fd = _writable(os.open, folder, path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CheckpointToolError(f'--hf-dir {folder} is being written by another process right now: wait '
                                      f'for it to finish, then run again') from None
        if os.path.exists(path) and os.path.samestat(os.fstat(fd), os.stat(path)):
            break
        os.close(fd)  # its holder removed that lock file as we opened it: take the new one
    try:
        yield
    finally:
        os.remove(path)
        os.close(fd)


def model_card(record: dict, source: str, license: Optional[str], report) -> str:
    """The Hub model card: where the weights came from, their license and sha256, the paper's reported accuracy."""
    from modzoo.utils.reported import load_reported
    arch, tag = record['architecture'], record.get('tag')
    reported = load_reported()
    paper = reported.get(f'{arch}.{tag}') or reported.get(arch) or {}
    lines = ['---', 'tags:', '- image-classification', '- timm', '- modzoo', 'library_name: timm',
             f'license: {license or "unknown"}', '---', f'# {arch}' + (f'.{tag}' if tag else ''), '',
             f'Weights for `{arch}` from [modzoo](https://pypi.org/project/modzoo/), converted by '
             f'`tools/get_checkpoint.py`.', '', '## Source', '',
             f'- source: {source or "unknown"}',
             f'- source sha256: `{record.get("source_sha256", "unknown")}`',
             f'- license: {license or "unknown (check the source)"}',
             f'- constructor kwargs beyond the defaults: `{json.dumps(record.get("kwargs") or {})}`', '']
    if report.missing:
        lines += [f'- kept at initialisation (not in the source): {len(report.missing)} tensors', '']
    lines += ['## Reported accuracy (from the paper, not measured here)', '']
    if paper.get('top1') is not None:
        lines.append(f'- ImageNet top-1 {paper["top1"]}% at {paper.get("resolution", "?")} px '
                     f'({paper.get("dataset", "")}; source: {paper.get("source", "")})')
    else:
        lines.append('- none: these weights have no published accuracy')
    lines += ['', '## Usage', '', '```python', 'import modzoo, timm',
              "model = timm.create_model('hf-hub:USER/REPO', pretrained=True)  # or 'local-dir:PATH'", '```', '']
    return '\n'.join(lines)


def normalise_sha256(value, flag: str = '--sha256'):
    """Lower-case hex digest, or None; refuses anything that is not 64 hex digits."""
    if value is None:
        return None
    digest = str(value).strip().lower()
    if len(digest) != 64 or any(c not in string.hexdigits for c in digest):
        raise CheckpointToolError(f'{flag} {value!r} is not a sha256 digest (64 hexadecimal digits): copy it again')
    return digest


def check_args(args) -> None:
    normalise_sha256(args.sha256)
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise CheckpointToolError(f'--timeout {args.timeout}: must be a finite number of seconds above 0 (e.g. 20)')
    if args.file and args.url:
        raise CheckpointToolError('--file and --url both name the checkpoint: pass one of them')
    if args.file and os.path.isdir(args.file):
        raise CheckpointToolError(f'--file {args.file} is a folder: pass the checkpoint file itself')
    if not os.path.isdir(args.manifest_dir):
        raise CheckpointToolError(f'--manifest-dir {args.manifest_dir}: no such folder')
    if args.hf_dir is not None and not args.hf_dir.strip():
        raise CheckpointToolError('--hf-dir "": pass the folder the Hub files go to')
    if args.overwrite and not args.hf_dir:
        raise CheckpointToolError('--overwrite replaces the files of a non-empty --hf-dir: pass --hf-dir DIR or '
                                  'drop --overwrite')
    if args.hf_dir:
        check_hub_folder(args.hf_dir, args.overwrite)
        check_output_dir(args.hf_dir, '--hf-dir')  # a symlink into a read-only filesystem: one line, no traceback
    else:  # with --hf-dir nothing is written into --out-dir
        check_output_dir(args.out_dir, '--out-dir')
    if not (args.file or args.url):
        check_output_dir(args.download_dir, '--download-dir')


def run(args) -> str:
    check_args(args)
    manifest = load_manifest(args.manifest_dir)
    arch, tag = resolve_name(args.model, manifest, own_file=bool(args.file or args.url))
    key = f'{arch}.{tag}'
    entry = manifest.get(key)
    if entry is None and not (args.file or args.url):
        known = sorted(k for k in manifest if k.startswith(arch + '.'))
        raise CheckpointToolError(
            f'{key} is not in the manifest. Known checkpoints of {arch}: {", ".join(known) or "none"}. '
            f'Pass a local file with --file PATH to convert one anyway.')
    entry = entry or {}
    dest = None if args.hf_dir else checkpoint_path(args.out_dir, arch, tag)
    path, where, expected = fetch(entry, args)
    expected = normalise_sha256(expected, '--sha256' if args.sha256 else f'the manifest sha256 of {key}')
    digest = sha256_of(path)
    if expected and digest != expected:
        raise CheckpointToolError(f'sha256 mismatch for {where}: expected {expected}, got {digest}')
    print(f'{where}: sha256 {digest}' + (' (verified)' if expected else ' (no published checksum)'))
    report, model = convert(arch, tag, path, entry, args.trust_pickle, args.allow_non_finite, args.prefix)
    converted = report.state_dict
    record = model_record(model, tag=tag, source_sha256=digest)
    if args.hf_dir:
        notes = write_hub_folder(args.hf_dir, report, model, record, source=where, license=entry.get('license'),
                                 overwrite=args.overwrite)
        print('\n'.join(notes + [f'wrote the Hub folder {args.hf_dir}\nload it with:\n  import modzoo, timm\n  '
              f'timm.create_model({"local-dir:" + args.hf_dir!r}, pretrained=True)\npublish it with:\n  '
              f'huggingface-cli upload USER/REPO {args.hf_dir}']))
        return args.hf_dir
    save_safetensors(converted, dest, dict(model=arch, tag=tag, source=where, source_sha256=digest,
                                           **{RECORD_KEY: json.dumps(record)}))
    print(f'wrote {dest} ({len(converted)} tensors)\nload it with:\n  timm.create_model({arch!r}, pretrained=True, '
          f'pretrained_cfg_overlay=dict(file={dest!r}))')
    return dest


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='registered model name, optionally with a pretrained tag (MODEL[.tag])')
    parser.add_argument('--source', type=int, help='index of the manifest source to use (default: first live one)')
    parser.add_argument('--file', help='convert this local file instead of downloading')
    parser.add_argument('--url', help='download from this URL (http(s):// or file://) instead of the manifest')
    parser.add_argument('--sha256', help='expected sha256 of the downloaded/local file')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow full unpickling of .pth files that store objects besides tensors')
    # relative to the working directory, like every modzoo command line (the README runs them from the checkout)
    parser.add_argument('--out-dir', default=os.path.abspath('checkpoints'))
    parser.add_argument('--download-dir', default=os.path.abspath(os.path.join('checkpoints', 'downloads')))
    parser.add_argument('--manifest-dir', default=MANIFEST_DIR)
    parser.add_argument('--timeout', type=float, default=20., help='network timeout in seconds')
    parser.add_argument('--prefix', help="take the tensors under this key prefix, as mmengine's Pretrained init "
                                         "does (e.g. backbone. for an mmdet/mmseg checkpoint's backbone)")
    parser.add_argument('--hf-dir', help="write a Hugging Face Hub folder (config.json, model.safetensors, "
                                         "README.md) that timm.create_model('local-dir:DIR', pretrained=True) loads")
    parser.add_argument('--overwrite', action='store_true',
                        help="replace the model in a non-empty --hf-dir (your other files and a README.md of your "
                             "own stay; the old weights go)")
    parser.add_argument('--allow-non-finite', action='store_true',
                        help='convert a checkpoint holding NaN/Inf values instead of refusing it')
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (CheckpointToolError, UsageError, modzoo.CheckpointMismatchError, modzoo.models.UnknownModelError,
            FileNotFoundError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    return 0
