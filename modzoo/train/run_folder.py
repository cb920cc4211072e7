"""The run folder of a training run: its default name, the checks that no run overwrites another's results, and the
lock a running run holds (the rules are told in :mod:`modzoo.train.trainer`'s docstring)."""
import datetime
import os

from modzoo.utils.cli import check_output_dir

from .checkpoint import ResumeError, read_training_checkpoint
from .config import ConfigError
from .distributed import DistContext
from .logs import CsvLog

__all__ = ['RESULT_FILES', 'default_run_folder', 'resolve_run_folder', 'refuse_older_resume', 'lock_run_folder']

RESULT_FILES = ('last.pth', 'best.pth', 'log.csv')  # what a new run into the folder would destroy


def default_run_folder(args, root: str = os.path.join('output', 'train')) -> str:
    """``<root>/<YYYYmmdd-HHMMSS>-<model>-<img size>``, suffixed ``-1``, ``-2``... if that folder exists."""
    size = args.img_size or (args.input_size[-1] if args.input_size else None)
    if size is None:
        from timm.models import get_pretrained_cfg
        cfg = get_pretrained_cfg(args.model.split('.')[0])
        size = cfg.input_size[-1] if cfg is not None and cfg.input_size else None
    stem = '-'.join(str(p) for p in (datetime.datetime.now().strftime('%Y%m%d-%H%M%S'), args.model, size) if p)
    path, n = os.path.join(root, stem), 0
    while os.path.exists(path):
        n += 1
        path = os.path.join(root, f'{stem}-{n}')
    return path


def resolve_run_folder(args, ctx: DistContext) -> str:
    """The run folder, refusing one whose earlier results this run would overwrite (see the module docstring)."""
    resume = args.resume
    if args.output:
        output = args.output
    elif resume == 'auto':
        raise ConfigError('--resume auto continues the run in --output: pass --output RUN_FOLDER, or --resume '
                          'RUN_FOLDER/last.pth')
    elif resume:
        output = os.path.dirname(os.path.abspath(resume))
    else:  # rank 0 picks the name: the clocks of the ranks may disagree by a second
        output = ctx.all_gather_object(default_run_folder(args))[0]
    check_output_dir(output)
    results = [f for f in RESULT_FILES if os.path.exists(os.path.join(output, f))]
    if not results:
        return output
    held = f'{output} already holds a run ({", ".join(results)})'
    if not resume:
        raise ConfigError(f'{held}: continue it with --resume auto, or start a new run with another --output '
                          f'(or none, for a new dated folder)')
    if resume == 'auto':
        if 'last.pth' not in results:
            raise ConfigError(f'{held} but no last.pth to continue: resume from a checkpoint file with --resume '
                              f'FILE, or start a new run with another --output')
        return output
    if not os.path.samefile(os.path.dirname(os.path.abspath(resume)), output):
        raise ConfigError(f'{held}; continuing {resume} there would overwrite it: leave out --output (the run '
                          f'continues in the checkpoint\'s folder) or pass an empty --output')
    return output


def _position(ckpt) -> tuple:
    return int(ckpt.get('epoch') or 0), int(ckpt.get('batch_in_epoch') or 0)


def refuse_older_resume(ckpt, resume_path: str, output: str) -> None:
    """ConfigError when ``output`` already holds results newer than the checkpoint being resumed (another snapshot,
    ``best.pth``, a copy of an earlier ``last.pth``): continuing would overwrite them."""
    last = os.path.join(output, 'last.pth')
    if os.path.isfile(last) and os.path.samefile(last, resume_path):
        return  # the run's own newest state; log rows it has not reached are the interrupted epoch's, rerun
    at = _position(ckpt)
    newer = []
    if os.path.isfile(last):
        try:
            last_at = _position(read_training_checkpoint(last))
        except ResumeError:  # a damaged last.pth: the log below still tells what was trained
            last_at = (0, 0)
        if last_at > at:
            newer.append(f'last.pth at epoch {last_at[0]}' + (f' step {last_at[1]}' if last_at[1] else ''))
    log = os.path.join(output, 'log.csv')
    if os.path.isfile(log):
        logged = CsvLog.epochs(log)
        if logged and max(logged) + 1 > at[0]:
            newer.append(f'log.csv rows up to epoch {max(logged) + 1}')
    if newer:
        where = f'epoch {at[0]}' + (f' step {at[1]}' if at[1] else '')
        raise ConfigError(
            f'--resume {resume_path} is at {where}, but {output} holds newer results ({", ".join(newer)}) that '
            f'continuing there would overwrite: resume from {last}, or continue the older checkpoint into a new '
            f'run folder with --output NEW_FOLDER')


def lock_run_folder(output: str):
    """An exclusive lock on the run folder (held while the process lives), or ConfigError if another run holds it."""
    try:
        import fcntl
    except ImportError:  # not on Windows: the result-file check above still applies
        return None
    fd = os.open(output, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f'another training run is writing to {output} right now: wait for it to end, or pass '
                          f'another --output') from None
    return fd
