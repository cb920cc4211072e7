"""Outputs never replace devices, FIFOs, symlinks or inputs; options that would do nothing are refused (issue 35,
items 1, 2, 3, 12, 13 and 15).

Devices are tried through FIFOs made in ``tmp_path``: the suite may run as root, where a wrong rename over
``/dev/null`` would replace the system's own.
"""
import json
import os
import stat
import threading

import pytest
import torch

import modzoo
from modzoo.bench import cpu_deploy, int8_accuracy
from modzoo.export import cli as export_onnx
from modzoo.train.validate import main as validate_main
from modzoo.utils.cli import UsageError, check_distinct_paths, check_output_file
from modzoo.utils.files import atomic_write

from test_cli_errors import EXPORT_TINY, UNWRITABLE, _calib_folder, one_line_error, write_folder

pytestmark = pytest.mark.filterwarnings('ignore::UserWarning')


class FifoReader:
    """A FIFO at ``path`` and a thread reading all that is written through it (``.data`` once the writer closed)."""

    def __init__(self, path):
        self.path = str(path)
        os.mkfifo(self.path)
        self.data = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        with open(self.path, 'rb') as f:  # blocks until a writer opens the FIFO
            self.data = f.read()

    def result(self, timeout=30.0):
        self.thread.join(timeout)
        assert stat.S_ISFIFO(os.lstat(self.path).st_mode), 'the FIFO was replaced by a regular file'
        return self.data


# ---------------------------------------------------------------------------------------------------------------
# the shared mechanism: modzoo.utils.files and modzoo.utils.cli


def test_atomic_write_writes_through_a_fifo_instead_of_replacing_it(tmp_path):
    reader = FifoReader(tmp_path / 'pipe')
    with atomic_write(reader.path, 'w') as f:
        f.write('results')
        assert os.listdir(tmp_path) == ['pipe']  # the temporary is not beside it: /dev may refuse new files
    assert reader.result() == b'results'
    assert os.listdir(tmp_path) == ['pipe']  # no temporary left behind


def test_atomic_write_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    target = tmp_path / 'real' / 'r.json'
    target.parent.mkdir()
    target.write_text('old')
    link = tmp_path / 'r.json'
    link.symlink_to(target)
    with atomic_write(link, 'w') as f:
        f.write('new')
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == 'new'


def test_atomic_write_creates_the_missing_folder_only_on_success(tmp_path):
    path = tmp_path / 'a' / 'b' / 'r.json'
    with pytest.raises(RuntimeError):
        with atomic_write(path, 'w') as f:
            f.write('half')
            raise RuntimeError('killed')
    assert os.listdir(tmp_path) == []
    with atomic_write(path, 'w') as f:
        f.write('whole')
    assert path.read_text() == 'whole'


def test_outputs_are_compared_with_inputs_by_inode_and_spelling(tmp_path, monkeypatch):
    checkpoint = tmp_path / 'ck.pth'
    checkpoint.write_bytes(b'weights')
    hard_link = tmp_path / 'other' / 'same.pth'
    hard_link.parent.mkdir()
    os.link(checkpoint, hard_link)
    monkeypatch.chdir(tmp_path / 'other')
    for spelling in ('../ck.pth', 'same.pth', str(tmp_path / 'other' / '..' / 'ck.pth')):
        with pytest.raises(UsageError, match='would overwrite the input --checkpoint'):
            check_distinct_paths({'--results-file': spelling}, {'--checkpoint': str(checkpoint)})
    check_distinct_paths({'--results-file': 'r.json'}, {'--checkpoint': str(checkpoint)})


def test_output_checks_follow_a_symlink_to_where_the_file_lands(tmp_path):
    link = tmp_path / 'r.json'
    link.symlink_to(UNWRITABLE + '/r.json')  # the link's own folder is writable, its target's is not
    with pytest.raises(UsageError, match='not writable'):
        check_output_file(str(link), '--json')
    reader = FifoReader(tmp_path / 'pipe')
    check_output_file(reader.path, '--json')  # written through: allowed
    with open(reader.path, 'wb'):  # let the reader thread finish
        pass


# ---------------------------------------------------------------------------------------------------------------
# validate.py


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp('tiny')
    model = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=2)
    torch.save({'state_dict': model.state_dict()}, d / 'ck.pth')
    return dict(data=write_folder(d / 'data', train=1, val=2), checkpoint=str(d / 'ck.pth'))


def _validate_argv(tiny, results_file):
    return ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)', '--num-classes',
            '2', '--workers', '0', '--img-size', '32', '--checkpoint', tiny['checkpoint'], '--data-dir',
            os.path.join(tiny['data'], 'val'), '--results-file', results_file]


def test_validate_results_into_a_fifo_are_written_through(tiny, tmp_path, capsys):
    reader = FifoReader(tmp_path / 'results')
    assert validate_main(_validate_argv(tiny, reader.path)) == 0
    assert json.loads(reader.result())['images'] == 4


def test_validate_refuses_results_over_its_checkpoint(tiny, tmp_path, capsys, monkeypatch):
    before = open(tiny['checkpoint'], 'rb').read()
    os.link(tiny['checkpoint'], tmp_path / 'linked.pth')
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(tiny['checkpoint'])
    for results_file in (relative, 'linked.pth'):
        line = one_line_error(capsys, validate_main, _validate_argv(tiny, results_file))
        assert 'would overwrite the input --checkpoint' in line, line
    assert open(tiny['checkpoint'], 'rb').read() == before


# ---------------------------------------------------------------------------------------------------------------
# export_onnx.py


def test_export_writes_a_graph_through_a_fifo(tmp_path, capsys):
    import onnx
    reader = FifoReader(tmp_path / 'm.onnx')
    assert export_onnx.main(EXPORT_TINY + ['-o', reader.path]) == 0
    graph = onnx.load_from_string(reader.result())
    assert graph.graph.output[0].name == 'logits'


def test_export_keeps_a_weights_file_it_did_not_write(tmp_path, capsys):
    out = tmp_path / 'm.onnx'
    users = tmp_path / 'm.onnx.data'
    users.write_bytes(b'the user\'s own file')
    assert export_onnx.main(EXPORT_TINY + ['-o', str(out)]) == 0
    assert users.read_bytes() == b'the user\'s own file'
    line = one_line_error(capsys, export_onnx.main, EXPORT_TINY + ['-o', str(out), '--external-data', 'yes'])
    assert 'm.onnx.data exists and is not the weights of' in line, line
    assert users.read_bytes() == b'the user\'s own file'
    users.unlink()
    # the weights of an earlier export are its own: a later export without them removes them (no stale file)
    assert export_onnx.main(EXPORT_TINY + ['-o', str(out), '--external-data', 'yes']) == 0
    assert users.exists()
    assert export_onnx.main(EXPORT_TINY + ['-o', str(out)]) == 0
    assert not users.exists()


def test_export_and_int8_into_missing_folders_create_them(tmp_path, capsys):
    calib = _calib_folder(tmp_path / 'calib')
    out, int8 = tmp_path / 'new' / 'm.onnx', tmp_path / 'other' / 'deep' / 'q.onnx'
    argv = EXPORT_TINY + ['-o', str(out), '--int8', '--int8-output', str(int8), '--calib-data', calib,
                          '--calib-images', '2']
    assert export_onnx.main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and int8.is_file()


OPTION_CASES = [
    ('both runtimes without check', ['--runtime', 'both'], '--runtime both chooses where --check and --int8 run'),
    ('int8 output not onnx', ['--int8', '--int8-output', '{tmp}/q.bin'], 'an ONNX file name ends in .onnx'),
    ('fixed batch above the calibration set', ['--int8', '--dynamic', 'none', '--batch', '4', '--calib-images', '2'],
     'fixed batch of 4 but there are 2 calibration images'),
    ('openvino weights path is a folder', ['--int8', '--runtime', 'openvino', '--check'],
     'its OpenVINO int8 weights) {tmp}/m-int8-openvino.bin is a folder'),
]


@pytest.mark.parametrize('argv,expected', [c[1:] for c in OPTION_CASES], ids=[c[0] for c in OPTION_CASES])
def test_export_option_that_would_do_nothing_or_fail_late(tmp_path, capsys, argv, expected):
    calib = _calib_folder(tmp_path / 'calib')
    (tmp_path / 'm-int8-openvino.bin').mkdir()
    argv = [a.format(tmp=tmp_path) for a in argv]
    if '--int8' in argv:
        argv += ['--calib-data', calib] + ([] if '--calib-images' in argv else ['--calib-images', '2'])
    line = one_line_error(capsys, export_onnx.main, EXPORT_TINY + ['-o', str(tmp_path / 'm.onnx')] + argv)
    assert expected.format(tmp=tmp_path) in line, line
    assert not (tmp_path / 'm.onnx').exists()


# ---------------------------------------------------------------------------------------------------------------
# bench tools


def _never_measure(*args, **kwargs):
    raise AssertionError('the tool measured instead of refusing its options')


def test_int8_accuracy_refuses_zero_images_and_a_report_over_its_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(int8_accuracy, 'measure', _never_measure)
    checkpoint = tmp_path / 'train' / 'best.pth'
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b'weights')
    line = one_line_error(capsys, int8_accuracy.main, [str(tmp_path), '--calib-images', '0'])
    assert '--calib-images 0: must be at least 1' in line, line
    line = one_line_error(capsys, int8_accuracy.main, [str(tmp_path), '--json', str(checkpoint)])
    assert 'would overwrite the input the checkpoint' in line, line
    assert checkpoint.read_bytes() == b'weights'


def test_cpu_deploy_quick_refuses_the_options_it_would_override(capsys, monkeypatch):
    monkeypatch.setattr(cpu_deploy, 'run_benchmarks', _never_measure)
    line = one_line_error(capsys, cpu_deploy.main, ['--quick', '--batches', '4', '--size', '64'])
    assert '--quick sets --size and --batches itself' in line, line


def test_train_refuses_a_checkpoint_input_its_run_would_rewrite(tiny, tmp_path, capsys):
    from modzoo.train.trainer import main as train_main
    run = tmp_path / 'run'
    run.mkdir()
    for name in ('last.pth', 'best.pth'):
        (run / name).write_bytes(b'an earlier run')
    argv = ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)', '--data-dir',
            tiny['data'], '--output', str(run), '--resume', 'auto', '--epochs', '1', '--workers', '0',
            '--teacher', 'zoo_focalnet_tiny_srf', '--teacher-checkpoint', str(run / 'best.pth')]
    line = one_line_error(capsys, train_main, argv)
    assert 'would overwrite the input --teacher-checkpoint' in line, line
    assert (run / 'best.pth').read_bytes() == b'an earlier run'


def test_aliasing_checks_its_plot_before_measuring(tmp_path, capsys, monkeypatch):
    from modzoo.bench import aliasing
    monkeypatch.setattr(aliasing, 'list_images', _never_measure)
    checkpoint = tmp_path / 'backbone.pth'
    checkpoint.write_bytes(b'weights')
    base = ['--model', 'zoo_focalnet_tiny_srf', '--images', str(tmp_path), '--checkpoint', str(checkpoint)]
    line = one_line_error(capsys, aliasing.main, base + ['--out', str(checkpoint)])
    assert 'would overwrite the input --checkpoint' in line, line
    line = one_line_error(capsys, aliasing.main, base + ['--out', UNWRITABLE + '/a.png'])
    assert 'not writable' in line, line
    assert checkpoint.read_bytes() == b'weights'


def test_kernel_static_report_never_writes_its_json_over_an_input(tmp_path, capsys, monkeypatch):
    from modzoo.bench import static_report
    monkeypatch.delenv('TRITON_INTERPRET', raising=False)  # only the compile needs it unset; nothing compiles here
    monkeypatch.setattr(static_report, '_load_json', _never_measure)
    baseline = tmp_path / 'baseline.json'
    baseline.write_text('[]')
    argv = ['--baseline', str(baseline), '--from-json', str(tmp_path / 'rows.json'), '--json', str(baseline),
            '--force']
    line = one_line_error(capsys, static_report.main, argv)
    assert '--json' in line and 'would overwrite the input --baseline 1' in line, line
    assert baseline.read_text() == '[]'
