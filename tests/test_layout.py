"""The layout rules a newcomer relies on: ruff passes, nothing edits sys.path or imports a file by its path, no
module of the package grows past 800 lines, `import modzoo` leaves OpenMMLab and the tools' modules alone (the
console entry points are checked in test_entry_points.py), every import of the package points down its floors, and
no module imports another module's private names."""
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


# The floors of the package, as README's Layout section names them: every top-level package and module of modzoo
# (``__init__`` is ``import modzoo`` itself) and the units it may import besides itself. Lazy imports inside
# functions count, and so do string-built ones (``importlib.import_module(f'modzoo.kernels.{op}_op')``: the
# constant prefix names the floor).
MODEL_FLOOR = {'__init__', 'version', 'models', 'decoders', 'layers', 'kernels', 'utils'}
LAYERS = {
    'utils': set(),
    'version': set(),
    'runtimes': set(),  # its worker runs as a script: it imports sessions.py by plain name, no other modzoo module
    'layers': {'utils'},
    'kernels': {'utils'},
    'decoders': {'layers', 'utils'},
    'models': {'layers', 'kernels', 'utils'},
    '__init__': {'version', 'models', 'layers', 'kernels', 'utils'},
    'datasets': {'utils'},
    'dense_digits': {'utils'},
    'hub': MODEL_FLOOR,
    'train': MODEL_FLOOR | {'hub', 'datasets'},
    'export': MODEL_FLOOR | {'runtimes', 'datasets'},
    'mm': MODEL_FLOOR | {'hub'},
}
TOP = ('bench', 'visualize', 'main_job')  # the tools' logic: any floor and each other; nothing below imports them
LAYERS.update({unit: set(LAYERS) | set(TOP) for unit in TOP})
IMPORTERS = ('import_module', '__import__')


def _unit_of(path):
    """The floor of a module of the package: ``modzoo/train/data.py`` -> ``train``, ``modzoo/hub.py`` -> ``hub``."""
    name = path.split('/')[1]
    return name[:-3] if name.endswith('.py') else name


def _module_name(path):
    parts = path[:-3].split('/')
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _string_prefix(node):
    """The constant start of a string expression: the literal, an f-string's text before its first field, the
    left side of ``+``; None when it does not start with a constant."""
    import ast
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        prefix = ''
        for value in node.values:
            if not isinstance(value, ast.Constant):
                break
            prefix += value.value
        return prefix
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string_prefix(node.left)
    return None


def imported_names(source, path):
    """(line, dotted name) of every import in ``source``, the module at ``path``: ``from a import b`` gives
    ``a.b``, a relative import is resolved against the module's package, a string-built import gives its constant
    prefix."""
    import ast
    package = path[:-3].split('/')[:-1]  # the package the module (or __init__) is in
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = '.'.join(base + (node.module.split('.') if node.module else []))
            for alias in node.names:
                yield node.lineno, f'{module}.{alias.name}'
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', None)
            prefix = _string_prefix(node.args[0]) if name in IMPORTERS else None
            if prefix:
                yield node.lineno, prefix


def imported_unit(name, units):
    """The floor a dotted name imports, None outside modzoo, ``'?'`` for a string prefix that stops before the
    floor (``f'modzoo.{unit}'``); any other name of modzoo itself (``from modzoo import create_model``) is
    ``__init__``."""
    parts = name.split('.')
    if parts[0] != 'modzoo':
        return None
    if len(parts) > 1 and parts[1] in units:
        return parts[1]
    return '?' if parts[1:] == [''] else '__init__'


def layer_offenders(sources):
    """``path:line imports modzoo.<unit>`` for every import in ``sources`` (``{path: text}`` of modules of the
    package) that points up or sideways out of its floor, or whose floor a string-built name does not tell."""
    offenders = []
    for path, source in sorted(sources.items()):
        unit = _unit_of(path)
        allowed = LAYERS[unit] | {unit}
        for line, name in imported_names(source, path):
            target = imported_unit(name, LAYERS)
            if target is not None and target not in allowed:
                offenders.append(f'{path}:{line} imports modzoo.{target}' if target != '?' else
                                 f'{path}:{line} imports {name!r}..., a floor the test cannot read')
    return list(dict.fromkeys(offenders))


def private_offenders(sources):
    """``path:line imports <name>`` for every import of a private name (``_x``, not ``__x__``) from outside the
    module or package that holds it: ``models/focalnet.py`` may import ``models._builder``, ``bench`` may not
    import ``main_job._val_loader`` or ``kernels._triton_utils``."""
    offenders = []
    for path, source in sorted(sources.items()):
        importer = _module_name(path)
        for line, name in imported_names(source, path):
            parts = name.split('.')
            if parts[0] != 'modzoo':
                continue
            private = [i for i, p in enumerate(parts) if p.startswith('_') and not p.endswith('__')]
            owner = '.'.join(parts[:private[0]]) if private else None
            if owner and importer != owner and not importer.startswith(owner + '.'):
                offenders.append(f'{path}:{line} imports {name}')
    return offenders


def _package_sources():
    sources = {}
    for path in _tracked_files():
        if path.startswith('modzoo/') and path.endswith('.py'):
            with open(os.path.join(ROOT, path), encoding='utf-8') as f:
                sources[path] = f.read()
    return sources


def test_every_unit_of_the_package_has_a_floor():
    units = {_unit_of(path) for path in _tracked_files() if path.startswith('modzoo/') and path.endswith('.py')}
    assert units - set(LAYERS) == set(), 'add the new package or module to LAYERS (and README\'s Layout section)'


def test_package_imports_point_down_the_layers():
    offenders = layer_offenders(_package_sources())
    assert not offenders, offenders


def test_no_private_imports_across_modules():
    offenders = private_offenders(_package_sources())
    assert not offenders, offenders


def _planted(unit, text):
    """``{path: text}`` of a module of ``unit``: the unit's own file for a top-level module, else one in its folder."""
    path = f'modzoo/{unit}.py' if os.path.isfile(os.path.join(ROOT, 'modzoo', f'{unit}.py')) else \
        f'modzoo/{unit}/planted.py'
    return {path: text.replace('<up>', '.' * path.count('/'))}  # the relative prefix that reaches modzoo/


@pytest.mark.parametrize('unit', sorted(u for u in LAYERS if set(LAYERS) - LAYERS[u] - {u}))
def test_layer_check_catches_a_planted_upward_import(unit):
    for target in sorted(set(LAYERS) - LAYERS[unit] - {unit}):
        dotted = 'modzoo' if target == '__init__' else f'modzoo.{target}'
        plants = [f'import {dotted}\n', f'def lazy():\n    from {dotted} import something\n']
        if target != '__init__':  # (modzoo + a string names no floor: the next check)
            plants += [f'import importlib\nimportlib.import_module(f"{dotted}.{{name}}_op")\n',
                       f'__import__("{dotted}." + name)\n', f'from <up>{target} import something\n']
        for text in plants:
            offenders = layer_offenders(_planted(unit, text))
            assert len(offenders) == 1 and offenders[0].endswith(f'imports modzoo.{target}'), (text, offenders)
    assert layer_offenders(_planted(unit, 'import importlib\nimportlib.import_module(f"modzoo.{floor}.x")\n'))
    assert not layer_offenders(_planted(unit, f'from <up>{unit} import sibling\nimport numpy\n'))


def test_private_check_catches_a_private_import_from_another_module():
    assert private_offenders({'modzoo/bench/x.py': 'from modzoo.main_job import _val_loader\n'})
    assert private_offenders({'modzoo/bench/x.py': 'def f():\n    from ..kernels import _triton_utils\n'})
    assert private_offenders({'modzoo/mm/flops.py': 'from .smoke import _registry\n'})
    assert not private_offenders({'modzoo/models/focalnet.py': 'from ._builder import build_zoo_model\n'})
    assert not private_offenders({'modzoo/kernels/dispatch.py': 'from . import _triton_utils\n'})
    assert not private_offenders({'modzoo/export/onnx.py': 'from modzoo import __version__\n'})
