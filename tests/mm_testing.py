"""Set-up shared by the OpenMMLab tests (tests/test_mm_*.py); import it after their ``pytest.importorskip``."""
import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope='module')
def one_thread_fast_parsing():
    """One intra-op thread per module, and ``mmseg::``/``mmdet::`` bases parsed without re-reading package indexes.

    Two OpenMP threads spin-wait against the other test workers: one thread is ~30x cheaper in CPU time here. Import
    this fixture into a test module (``from mm_testing import one_thread_fast_parsing``) to apply it there.
    """
    from modzoo.mm.smoke import cached_package_config_index
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with cached_package_config_index():
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    """Tiny ADE20K and COCO folders in their real on-disk formats, written once per module."""
    from modzoo.mm.tiny import WRITERS
    root = str(tmp_path_factory.mktemp('tiny'))
    WRITERS['ade20k'](root, num_train=4, num_val=2, size=(64, 80))
    WRITERS['coco'](root, num_train=4, num_val=2, size=(96, 128))
    return root
