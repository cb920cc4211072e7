"""No function in ``modzoo/`` is longer than one screen's worth (100 lines), so each reads as one step.

Exemption rule: a function decorated with ``@triton.jit`` or ``@triton.jit(...)`` (other decorators such as
``@triton.autotune`` may stand beside it) is a Triton kernel body, compiled as one unit, so it may be longer.
"""
import ast
import pathlib

MAX_LINES = 100
PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'modzoo'


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    return ast.unparse(target)


def is_triton_kernel(func: ast.AST) -> bool:
    return any(_decorator_name(d) == 'triton.jit' for d in func.decorator_list)


def long_functions(source: str, filename: str):
    """'path:line name (N lines)' for each function over MAX_LINES lines that is not a Triton kernel body."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not is_triton_kernel(node):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_LINES:
                found.append(f'{filename}:{node.lineno} {node.name} ({length} lines)')
    return found


def test_no_function_in_modzoo_is_over_100_lines():
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        found += long_functions(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, 'split these into functions of at most 100 lines:\n' + '\n'.join(found)


def test_the_rule_sees_long_functions_and_exempts_only_triton_kernels():
    body = '\n'.join(f'    x{i} = {i}' for i in range(MAX_LINES))
    plain = f'def f():\n{body}\n'
    assert long_functions(plain, 'plain.py') == [f'plain.py:1 f ({MAX_LINES + 1} lines)']
    assert long_functions(f'class C:\n    def m(self):\n    {body.replace(chr(10), chr(10) + "    ")}\n', 'c.py')
    for decorator in ('@triton.jit', '@triton.jit(do_not_specialize=["n"])', '@triton.autotune([], [])\n@triton.jit'):
        assert long_functions(f'{decorator}\n{plain}', 'k.py') == [], decorator
    for decorator in ('@torch.jit.script', '@jit'):
        assert long_functions(f'{decorator}\n{plain}', 'j.py'), f'{decorator}: only Triton kernels are exempt'
