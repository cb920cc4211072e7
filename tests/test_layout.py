"""The layout rules a newcomer relies on: ruff passes, nothing edits sys.path or imports a file by its path, no
module of the package grows past 800 lines, and `import modzoo` leaves OpenMMLab and the tools' modules alone (the
console entry points are checked in test_entry_points.py)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked_files():
    out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip('not a git checkout')
    return out.stdout.split()


def test_ruff_passes():
    ruff = shutil.which('ruff', path=os.path.dirname(sys.executable)) or shutil.which('ruff')
    if ruff is None:
        pytest.fail('ruff is missing: it is in the dev extra (tools/setup_env.sh installs it)')
    result = subprocess.run([ruff, 'check', '.'], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_path_edits_or_file_imports():
    pattern = re.compile(r'sys\.path\.(insert|append)|spec_from_file_location')
    offenders = []
    for path in _tracked_files():
        if not path.endswith(('.py', '.sh')) or path == 'tests/test_layout.py':
            continue
        with open(os.path.join(ROOT, path), encoding='utf-8') as f:
            offenders += [f'{path}:{i}' for i, line in enumerate(f, 1) if pattern.search(line)]
    assert not offenders, offenders


def test_package_modules_stay_under_800_lines():
    long = []
    for path in _tracked_files():
        if path.startswith('modzoo/') and path.endswith('.py'):
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                n = sum(1 for _ in f)
            if n > 800:
                long.append((path, n))
    assert not long, long


def test_import_modzoo_leaves_mm_and_bench_alone():
    # triton is not checked here: timm's own import already loads it (the kernels test checks none is defined)
    code = ('import sys, modzoo\n'
            'bad = [m for m in sys.modules if m.split(".")[0] in ("mmengine", "mmseg", "mmdet", "mmcv")'
            ' or m.startswith(("modzoo.mm", "modzoo.bench", "modzoo.visualize", "modzoo.main_job"))]\n'
            'print(bad)\n'
            'sys.exit(1 if bad else 0)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The layers of the package, as README's Layout section names them: a module may import its own layer and those
# below it. Lazy imports inside functions count too.
LAYERS = {
    'utils': {'utils'},
    'layers': {'layers', 'utils'},
    'kernels': {'kernels', 'utils'},
    'decoders': {'decoders', 'layers', 'utils'},
    'models': {'models', 'layers', 'kernels', 'utils'},
}


def _modzoo_imports(path):
    """(line, imported subpackage of modzoo) of every import in the module at ``path``."""
    import ast
    with open(os.path.join(ROOT, path), encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    package = path[:-3].split('/')[:-1]  # the package the module (or __init__) is in
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = base + (node.module.split('.') if node.module else [])
            names = ['.'.join(module + ([a.name] if not node.module else [])) for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split('.')
            if parts[0] == 'modzoo':
                yield node.lineno, parts[1] if len(parts) > 1 else '(modzoo)'


def test_package_imports_point_down_the_layers():
    offenders = []
    for path in _tracked_files():
        if not (path.startswith('modzoo/') and path.endswith('.py')):
            continue
        layer = path.split('/')[1]
        allowed = LAYERS.get(layer[:-3] if layer.endswith('.py') else layer)
        if allowed is None:  # above the models: train, export, hub, mm, bench, ...
            continue
        offenders += [f'{path}:{line} imports modzoo.{target}' for line, target in _modzoo_imports(path)
                      if target not in allowed]
    assert not offenders, offenders
