"""A checkpoint write that fails (a full disk) ends training with one line whose way on names only checkpoints that
exist, and that way on works."""
import errno
import os

import pytest

from modzoo.train import trainer
from modzoo.train.trainer import main as train_main
from test_cli_errors import FAST, TINY, one_line_error, write_folder


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp('write_errors') / 'data')


def fail_saves(monkeypatch, numbers):
    """``atomic_save`` raises ENOSPC on the saves numbered in ``numbers`` (1 = the run's first save)."""
    real, calls = trainer.atomic_save, []

    def save(obj, path):
        calls.append(path)
        if len(calls) in numbers:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(obj, path)
    monkeypatch.setattr(trainer, 'atomic_save', save)


def test_full_disk_on_the_first_save_advises_a_new_run_not_a_resume(data, tmp_path, capsys, monkeypatch):
    base = TINY + FAST + ['--data-dir', data, '--val-split', 'none', '--epochs', '1']
    out = tmp_path / 'run'
    fail_saves(monkeypatch, {1})
    line = one_line_error(capsys, train_main, base + ['--output', str(out)])
    assert f'cannot write {out / "last.pth"} (No space left on device): free space on that disk' in line, line
    assert '--resume' not in line and 'nothing to resume' in line and 'another --output' in line, line
    assert not (out / 'last.pth').exists() and (out / 'log.csv').exists()
    monkeypatch.undo()
    assert train_main(base + ['--output', str(tmp_path / 'again')]) == 0  # what the line says works


def test_full_disk_on_the_first_last_pth_names_the_best_pth_written(data, tmp_path, capsys, monkeypatch):
    base = TINY + FAST + ['--data-dir', data, '--epochs', '2']
    out = tmp_path / 'run'
    fail_saves(monkeypatch, {2})  # epoch 1 saves best.pth, then last.pth
    line = one_line_error(capsys, train_main, base + ['--output', str(out)])
    assert f'--resume {out / "best.pth"}' in line and '--resume auto' not in line, line
    monkeypatch.undo()
    assert train_main(base + ['--resume', str(out / 'best.pth')]) == 0  # what the line says works
    assert (out / 'last.pth').exists()


def test_full_disk_after_a_last_pth_advises_resume_auto(data, tmp_path, capsys, monkeypatch):
    base = TINY + FAST + ['--data-dir', data, '--val-split', 'none', '--epochs', '2']
    out = tmp_path / 'run'
    fail_saves(monkeypatch, {2})  # epoch 1's last.pth is written, epoch 2's is not
    line = one_line_error(capsys, train_main, base + ['--output', str(out)])
    assert '--resume auto; last.pth keeps the last complete checkpoint' in line, line
    monkeypatch.undo()
    assert train_main(base + ['--output', str(out), '--resume', 'auto']) == 0  # what the line says works
