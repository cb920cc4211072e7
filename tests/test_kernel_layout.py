"""The kernels are a library of primitives: an op's two modules (``<op>_op.py``, ``<op>_triton.py``) reach shared
code through ``_triton_utils``, ``_layout`` and the dispatch modules, never through another op's module, and the
shared modules import no op. Checked on the source (no Triton import needed)."""
import ast
from pathlib import Path
from typing import Set

import pytest

KERNELS = Path(__file__).resolve().parent.parent / 'modzoo' / 'kernels'
PACKAGE = 'modzoo.kernels'
SHARED = {'_triton_utils', '_layout', 'dispatch', 'validated', 'gpu_info'}
# names every op's Triton module defines for itself (its own list of kernels, its own pass plan)
OP_PROTOCOL = {'TUNED_KERNELS'}


def _modules():
    return sorted(p.stem for p in KERNELS.glob('*.py'))


def _op_of(module: str):
    for suffix in ('_op', '_triton'):
        if module.endswith(suffix):
            return module[:-len(suffix)]
    return None


def kernel_imports(source: str) -> Set[str]:
    """The ``modzoo.kernels`` modules a kernel module's source imports (``'__init__'`` for the package itself,
    ``'<string-built>'`` for an ``importlib``/``__import__`` call, whose target cannot be read)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, 'id', '')
            if name in ('import_module', '__import__'):
                found.add('<string-built>')
            continue
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = PACKAGE.split('.')[:len(PACKAGE.split('.')) - node.level + 1] if node.level else []
            module = '.'.join(base + ([node.module] if node.module else []))
            targets = [(module, [alias.name for alias in node.names])]
        else:
            continue
        for module, names in targets:
            if module == PACKAGE:
                # `from . import x`: a submodule when a file has that name, else the package's own namespace
                found |= {n if (KERNELS / f'{n}.py').exists() else '__init__' for n in (names or ['__init__'])}
            elif module.startswith(PACKAGE + '.'):
                found.add(module[len(PACKAGE) + 1:].split('.')[0])
    return found


def forbidden_imports(module: str, source: str) -> Set[str]:
    """What ``module`` imports from ``modzoo.kernels`` beyond its own op's pair and the shared modules."""
    if module == '__init__':
        return set()  # the public face re-exports every op
    op = _op_of(module)
    allowed = SHARED | ({f'{op}_op', f'{op}_triton'} if op else set())
    return kernel_imports(source) - allowed - {module}


@pytest.mark.parametrize('module', _modules())
def test_kernel_module_imports_no_other_op(module):
    bad = forbidden_imports(module, (KERNELS / f'{module}.py').read_text())
    assert not bad, (f'modzoo/kernels/{module}.py imports {sorted(bad)}: move what it needs into _triton_utils.py '
                     f'(Triton helpers) or _layout.py (torch-only) instead of reaching into another op')


def test_the_check_catches_a_planted_cross_op_import():
    """The checker is not vacuous: every way to spell a cross-op import is flagged."""
    for planted in ('from .dwconv_gelu_triton import depthwise_conv',
                    'from modzoo.kernels.dwconv_gelu_op import dwconv_gelu',
                    'import modzoo.kernels.gelu_tile_mul_triton',
                    'from . import mixed_dwconv_interleave_triton',
                    'from . import dwconv_gelu',
                    'def f():\n    from .dwconv_gelu_triton import DWCONV_FWD',
                    "import importlib\nimportlib.import_module('modzoo.kernels.dwconv_gelu_triton')"):
        source = (KERNELS / 'focal_context_triton.py').read_text() + '\n' + planted + '\n'
        assert forbidden_imports('focal_context_triton', source), planted
    utils = (KERNELS / '_triton_utils.py').read_text() + '\nfrom .focal_context_op import focal_context\n'
    assert forbidden_imports('_triton_utils', utils) == {'focal_context_op'}
    assert not forbidden_imports('focal_context_triton', 'from .focal_context_op import _check_args\n'
                                                         'from ._triton_utils import gelu\n')


def _module_constants(module: str) -> Set[str]:
    tree = ast.parse((KERNELS / f'{module}.py').read_text())
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, 'target', None)]
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return names


def test_each_kernel_constant_is_written_once():
    """A shared constant (tile candidates, size rules, ...) lives in one module; ops import it."""
    seen = {}
    for module in _modules():
        for name in _module_constants(module) - OP_PROTOCOL:
            seen.setdefault(name, []).append(module)
    twice = {name: mods for name, mods in seen.items() if len(mods) > 1}
    assert not twice, f'constants defined in several kernel modules (define once, import): {twice}'


# a Triton helper with more parameters than this is called with keywords only (a swapped stride still compiles)
MAX_POSITIONAL_PARAMS = 8


def _jit_helpers():
    """``{name: parameter count}`` of every ``@triton.jit`` function of the kernels."""
    helpers = {}
    for module in _modules():
        for node in ast.parse((KERNELS / f'{module}.py').read_text()).body:
            if isinstance(node, ast.FunctionDef) and any('jit' in ast.unparse(d) for d in node.decorator_list):
                helpers[node.name] = len(node.args.args)
    return helpers


def positional_long_calls(source: str, helpers: dict) -> list:
    """``name:line`` of each call that passes positional arguments to a helper of more than
    :data:`MAX_POSITIONAL_PARAMS` parameters."""
    return [f'{node.func.id}:{node.lineno}' for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args
            and helpers.get(node.func.id, 0) > MAX_POSITIONAL_PARAMS]


@pytest.mark.parametrize('module', _modules())
def test_long_triton_helpers_are_called_with_keywords(module):
    calls = positional_long_calls((KERNELS / f'{module}.py').read_text(), _jit_helpers())
    assert not calls, f'modzoo/kernels/{module}.py: pass these helpers their arguments by keyword: {calls}'


def test_the_keyword_check_catches_a_positional_call():
    helpers = _jit_helpers()
    assert helpers['finish_weight_grad'] > MAX_POSITIONAL_PARAMS
    assert positional_long_calls('finish_weight_grad(dwp, dws, src, g, offs_c, mask_c, C, pid_s, n_split)', helpers)
    assert not positional_long_calls('gelu(z)\nfinish_weight_grad(dwp_ptr=dwp, dws=dws)', helpers)
