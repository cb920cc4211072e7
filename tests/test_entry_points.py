"""Every console entry point in ``[project.scripts]`` answers ``--help``: usage on stdout, exit status 0.

The functions are called in-process with ``argv=['--help']`` (what the installed ``modzoo-*`` script runs), so the
check does not depend on the scripts having been reinstalled. The OpenMMLab commands skip without OpenMMLab; any
other entry point whose module or function is missing fails.
"""
import importlib
import importlib.util
import os

import pytest

tomllib = pytest.importorskip('tomllib')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENMMLAB = ('mmengine', 'mmcv', 'mmseg', 'mmdet')

with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    SCRIPTS = tomllib.load(f)['project'].get('scripts', {})

EXPECTED = {
    'modzoo-train': 'modzoo.train.trainer:main',
    'modzoo-validate': 'modzoo.train.validate:main',
    'modzoo-export': 'modzoo.export.cli:main',
    'modzoo-get-checkpoint': 'modzoo.hub:main',
    'modzoo-main-job': 'modzoo.main_job:main',
    'modzoo-train-seg': 'modzoo.mm.cli:train_seg',
    'modzoo-test-seg': 'modzoo.mm.cli:test_seg',
    'modzoo-train-det': 'modzoo.mm.cli:train_det',
    'modzoo-test-det': 'modzoo.mm.cli:test_det',
    'modzoo-make-tiny-datasets': 'modzoo.mm.tiny:make_tiny_datasets',
    'modzoo-make-dense-digits': 'modzoo.dense_digits:make_dense_digits',
    'modzoo-bench-dense': 'modzoo.bench.dense:main',
    'modzoo-zoo-report': 'modzoo.bench.zoo_report:main',
    'modzoo-visualize': 'modzoo.visualize:main',
    'modzoo-gpu-check': 'modzoo.bench.gpu_check:main',
    'modzoo-kernel-static-report': 'modzoo.bench.static_report:main',
}


def test_every_command_line_has_an_entry_point():
    assert SCRIPTS == EXPECTED


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_entry_point_answers_help(script, capsys):
    module_name, _, function_name = SCRIPTS[script].partition(':')
    if module_name.startswith('modzoo.mm.'):
        missing = [m for m in OPENMMLAB if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f'needs OpenMMLab ({", ".join(missing)} not installed)')
    main = getattr(importlib.import_module(module_name), function_name)
    with pytest.raises(SystemExit) as exit_info:
        main(['--help'])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith('usage: '), f'{script}: no usage line in\n{out[:500]}'
