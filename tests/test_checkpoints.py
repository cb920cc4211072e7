"""The checkpoint manifest and ``modzoo.hub`` (``tools/get_checkpoint.py``): manifest <-> pretrained_cfg
consistency, download (file://), checksum, conversion to a safetensors file the public timm API loads, and the
offline/bad-input paths."""
import hashlib
import os
import subprocess
import sys
import time

import pytest
import timm
import torch

import modzoo
from modzoo import hub as get_checkpoint
from zoo_testing import random_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST = get_checkpoint.load_manifest()


def test_manifest_names_registered_tags():
    tagged = set(timm.list_models('zoo_*', include_tags=True))
    unknown = sorted(k for k in MANIFEST if k not in tagged)
    assert not unknown, f'manifest entries for unregistered model.tag: {unknown}'
    for key, entry in MANIFEST.items():
        assert entry.get('sources'), key
        for src in entry['sources']:
            # google_drive_folder: a folder link (EfficientMod) that needs a browser; the tool says so
            assert src['kind'] in ('url', 'hf_hub', 'google_drive_folder'), (key, src)
            assert src['status'] in ('published', 'dead'), (key, src)


@pytest.mark.parametrize('name', sorted(timm.list_models('zoo_*', pretrained=True, include_tags=True)))
def test_every_weight_source_is_in_the_manifest(name):
    cfg = timm.models.get_pretrained_cfg(name)
    entry = MANIFEST.get(name)
    assert entry is not None, f'{name} has weights in its pretrained_cfg but no manifest entry'
    listed = {s.get('url') for s in entry['sources']} | {s.get('hf_hub_id') for s in entry['sources']}
    for source in (cfg.url, cfg.hf_hub_id):
        if source:
            assert source in listed, f'{name}: {source} missing from the manifest'
    assert entry['num_classes'] == cfg.num_classes


def _official_file(tmp_path):
    path = tmp_path / 'focalnet_tiny_srf.pth'
    torch.save({'model': random_checkpoint('focalnet_tiny_srf'), 'epoch': 299}, path)
    return path


def test_download_convert_and_load(tmp_path):
    src = _official_file(tmp_path)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    out = tmp_path / 'out'
    code = get_checkpoint.main([
        'zoo_focalnet_tiny_srf.ms_in1k', '--url', src.as_uri(), '--sha256', digest,
        '--out-dir', str(out), '--download-dir', str(tmp_path / 'dl')])
    assert code == 0
    dest = out / 'zoo_focalnet_tiny_srf.ms_in1k.safetensors'
    model = timm.create_model('zoo_focalnet_tiny_srf', pretrained=True, pretrained_cfg_overlay=dict(file=str(dest)))
    official = torch.load(src)['model']
    assert torch.equal(model.layers[1].downsample.proj.weight, official['layers.0.downsample.proj.weight'])
    assert not any(p.name.endswith('.part') for p in out.iterdir())


def test_checksum_mismatch_writes_nothing(tmp_path, capsys):
    src = _official_file(tmp_path)
    code = get_checkpoint.main([
        'zoo_focalnet_tiny_srf', '--url', src.as_uri(), '--sha256', '0' * 64,
        '--out-dir', str(tmp_path / 'out'), '--download-dir', str(tmp_path / 'dl')])
    assert code == 2 and 'sha256 mismatch' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_offline_fails_fast_with_advice(tmp_path, capsys):
    start = time.perf_counter()
    # port 9 (discard) on loopback: connection refused immediately, as an unreachable host is offline
    code = get_checkpoint.main([
        'zoo_focalnet_tiny_srf', '--url', 'http://127.0.0.1:9/focalnet_tiny_srf.pth',
        '--out-dir', str(tmp_path / 'out'), '--download-dir', str(tmp_path / 'dl'), '--timeout', '5'])
    err = capsys.readouterr().err
    assert code == 2 and '--file PATH' in err
    assert time.perf_counter() - start < 10
    assert not list((tmp_path / 'dl').glob('*'))


def test_dead_sources_are_skipped_with_a_message(tmp_path, capsys):
    code = get_checkpoint.main(['zoo_focalnet_tiny_iso', '--out-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and 'marked dead' in err and '--file PATH' in err


def test_manual_only_sources_explain_themselves(tmp_path, capsys):
    code = get_checkpoint.main(['zoo_efficientmod_s', '--out-dir', str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and 'fetch the file by hand' in err and '--file PATH' in err


def test_local_file_and_misfit(tmp_path, capsys):
    src = _official_file(tmp_path)
    assert get_checkpoint.main(['zoo_focalnet_tiny_srf', '--file', str(src), '--out-dir', str(tmp_path)]) == 0
    # a tiny checkpoint does not fit the small model: the keys are listed, nothing is written
    code = get_checkpoint.main(['zoo_focalnet_small_srf', '--file', str(src), '--out-dir', str(tmp_path / 'x')])
    err = capsys.readouterr().err
    assert code == 2 and 'missing key' in err and 'layers.2.blocks.6' in err
    assert not (tmp_path / 'x').exists()


def test_pickled_config_needs_trust(tmp_path, capsys):
    src = tmp_path / 'with_config.pth'
    torch.save({'model': random_checkpoint('focalnet_tiny_srf'), 'config': _Config()}, src)
    assert get_checkpoint.main(['zoo_focalnet_tiny_srf', '--file', str(src), '--out-dir', str(tmp_path)]) == 2
    assert '--trust-pickle' in capsys.readouterr().err
    assert get_checkpoint.main(
        ['zoo_focalnet_tiny_srf', '--file', str(src), '--out-dir', str(tmp_path), '--trust-pickle']) == 0


def test_unknown_model(capsys):
    assert get_checkpoint.main(['zoo_focalnet_tiny_srff']) == 2
    assert 'Did you mean: zoo_focalnet_tiny_srf' in capsys.readouterr().err


class _Config:  # stands in for the yacs config object official FocalNet checkpoints pickle
    pass


def test_manifest_is_package_data():
    """The manifest ships inside the package (found without a checkout), one file per family."""
    assert get_checkpoint.MANIFEST_DIR == os.path.join(os.path.dirname(modzoo.__file__), 'data', 'manifest')
    assert sorted(os.listdir(get_checkpoint.MANIFEST_DIR)) == [
        'efficientmod.json', 'focalnet.json', 'gridpe_pvt.json', 'smt.json']


def test_tool_script_is_the_package_command(tmp_path):
    """``python tools/get_checkpoint.py`` runs ``modzoo.hub.main``: same message, same exit status."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'get_checkpoint.py'), 'zoo_focalnet_tiny_srff'],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'Did you mean: zoo_focalnet_tiny_srf' in r.stderr
    assert not (tmp_path / 'checkpoints').exists()
