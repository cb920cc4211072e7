"""Test-session setup shared by every test module."""
import os

# Triton kernels run on the CPU through the interpreter in CI; the flag must be set before any module that defines
# @triton.jit kernels is imported, so it is set here, ahead of `import modzoo`.
if os.environ.get('MODZOO_TEST_GPU', '0') != '1':
    os.environ.setdefault('TRITON_INTERPRET', '1')

import pytest  # noqa: E402
import torch  # noqa: E402

import modzoo  # noqa: E402,F401  (registers the zoo_* models before tests are collected)

if os.environ.get('PYTEST_XDIST_WORKER'):
    # one intra-op thread per xdist worker: two workers on two cores must not oversubscribe
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
    if not torch.is_grad_enabled():  # a leak here breaks every later backward test in this worker
        torch.set_grad_enabled(True)
        pytest.fail('the test left autograd disabled (torch.set_grad_enabled(False) outside a with block)')


def pytest_collection_modifyitems(config, items):
    # `slow` tests (minutes each on 2 cores) run only on request: MODZOO_SLOW=1
    if os.environ.get('MODZOO_SLOW') == '1':
        return
    skip = pytest.mark.skip(reason='slow; set MODZOO_SLOW=1 to run')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)
