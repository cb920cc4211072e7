"""configs/digits_dense on the dense digits (modzoo.dense_digits): the stock BaseSegDataset / CocoDataset read the
written data with each config's metainfo and pipeline, each model trains a step on real canvases, the goal check and
the table of modzoo.bench.dense; and (slow, run by tools/bench_dense.py's table, not CI) each config's full run
through the stock tools reaching its goal (the shuffled-label control's: staying far below the others')."""
import json
import os

import numpy as np
import pytest
from PIL import Image
import torch

pytest.importorskip('mmseg')
pytest.importorskip('mmdet')
pytest.importorskip('sklearn')
pytestmark = pytest.mark.mm

from modzoo.dense_digits import DET_METAINFO, SEG_METAINFO, write_dense_digits  # noqa: E402
from modzoo.bench import dense as dense_bench  # noqa: E402
from modzoo.mm.smoke import build_model, load_config, scope_of, train_step  # noqa: E402
from mm_testing import one_thread_fast_parsing  # noqa: E402,F401  (autouse fixture)

SMALL = dict(num_train=6, num_val=3)
CONTROL = 'EfficientMod-xxs FPN shuffled-label control'
# the controls share their run's config (and so its dataset check, train step and seed)
TRAINED = sorted(set(dense_bench.DENSE_RUNS) - set(dense_bench.CONTROL_RUNS))


@pytest.fixture(scope='module')
def dense_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('dense') / 'dense_digits')
    write_dense_digits(root, seed=1, **SMALL)
    return root


def _config(name, root):
    cfg = load_config(dense_bench.config_path(name))
    cfg.merge_from_dict(dict(o.split('=', 1) for o in dense_bench.data_root_options(scope_of(cfg), root)))
    return cfg


def _datasets(cfg):
    from mmengine.registry import DefaultScope
    scope = scope_of(cfg)
    if scope == 'mmseg':
        import mmseg.datasets  # noqa: F401  (registers datasets and transforms)
        from mmseg.registry import DATASETS
    else:
        import mmdet.datasets  # noqa: F401
        from mmdet.registry import DATASETS
    with DefaultScope.overwrite_default_scope(scope):
        return DATASETS.build(cfg.train_dataloader.dataset), DATASETS.build(cfg.val_dataloader.dataset)


@pytest.mark.parametrize('name', TRAINED)
def test_stock_dataset_reads_the_written_data_and_the_model_trains_on_it(name, dense_root):
    cfg = _config(name, dense_root)
    train, val = _datasets(cfg)
    assert (len(train), len(val)) == (SMALL['num_train'], SMALL['num_val'])
    seg = scope_of(cfg) == 'mmseg'
    expected_classes = SEG_METAINFO['classes'] if seg else DET_METAINFO['classes']
    assert tuple(train.metainfo['classes']) == tuple(val.metainfo['classes']) == expected_classes
    samples = [train[0], train[1]]
    if seg:
        assert cfg.model.decode_head.num_classes == 11
        labels = samples[0]['data_samples'].gt_sem_seg.data
        crop = tuple(cfg.model.data_preprocessor.size)  # the batch is padded to it: it must be the crop's size
        assert tuple(labels.shape[-2:]) == crop and 0 in labels and int(labels.max()) <= 10
        # evaluated at the canvas's own size: no resize may blur a label edge away from its image edge
        shown = val[0]
        with Image.open(shown['data_samples'].img_path) as canvas:
            size = canvas.size[::-1]
        assert tuple(shown['inputs'].shape[-2:]) == tuple(shown['data_samples'].gt_sem_seg.data.shape[-2:]) == size
    else:
        assert cfg.model.bbox_head.num_classes == 10
        with open(os.path.join(dense_root, 'annotations', 'instances_train.json')) as f:
            coco = json.load(f)
        image_id = samples[0]['data_samples'].img_id
        digits = sorted(a['category_id'] - 1 for a in coco['annotations'] if a['image_id'] == image_id)
        assert sorted(samples[0]['data_samples'].gt_instances.labels.tolist()) == digits
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])
    losses = train_step(model, batch)
    total = sum(v.sum() if torch.is_tensor(v) else sum(x.sum() for x in v) for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and total > 0
    assert all(p.grad is not None for p in model.backbone.parameters() if p.requires_grad)


def test_goal_check_and_table():
    seg, det = 'EfficientMod-xxs FPN', 'GridPE-PVTv2-b0 RetinaNet'
    dense_bench.check_goal(seg, {'mIoU': 70.0})
    with pytest.raises(dense_bench.GoalMissed, match='mIoU 69.9'):
        dense_bench.check_goal(seg, {'mIoU': 69.9})
    dense_bench.check_goal(det, {'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': 0.85})
    with pytest.raises(dense_bench.GoalMissed, match='AP50 0.840'):
        dense_bench.check_goal(det, {'coco/bbox_mAP': 0.6, 'coco/bbox_mAP_50': 0.84})
    with pytest.raises(dense_bench.GoalMissed, match='AP 0.000 / AP50 0.000'):  # CocoMetric: no boxes, no figures
        dense_bench.check_goal(det, {})
    table = dense_bench.dense_table({seg: {'mIoU': 71.25, 'train_s': 300.4, 'peak_mib': 1500.2},
                                     det: {'coco/bbox_mAP': 0.5123, 'coco/bbox_mAP_50': 0.9, 'train_s': 59.6,
                                           'peak_mib': 999.6}}, 'Machine: test')
    rows = table.splitlines()[2:]  # under the heading
    assert rows[2] == ('| EfficientMod-xxs FPN | `configs/digits_dense/fpn_efficientmod-xxs_dense-digits-128x128.py` | '
                       '71.2 | - | - | - | met | 300 | 1500 |  |')
    assert rows[3].endswith('| - | 0.512 | 0.900 | - | met | 60 | 1000 |  |') and rows[-1] == 'Machine: test'
    missed = dense_bench.dense_table({seg: {'mIoU': 7.7, 'train_s': 1, 'peak_mib': 1, 'date': '2026-12-07 10:00 UTC',
                                            'load_before': 2.0, 'load_after': 2.04, 'threads': 1, 'parallel': 2}},
                                      '').splitlines()[4]
    assert missed.endswith('| **missed** | 1 | 1 | 2026-12-07 10:00 UTC, load 2.0→2.0, 1 thread(s), 2 runs at a time |')


def test_the_control_is_a_row_of_the_table_with_its_own_goal():
    assert dense_bench.CONTROL_RUNS == {CONTROL: 'EfficientMod-xxs FPN'}
    assert dense_bench.config_path(CONTROL) == dense_bench.config_path('EfficientMod-xxs FPN')  # only the data differ
    assert CONTROL not in dense_bench.MAIN_JOB_RUNS
    dense_bench.check_goal(CONTROL, {'mIoU': 7.7})
    for learnt in (30.0, 72.9, float('nan')):
        with pytest.raises(dense_bench.GoalMissed, match='on shuffled labels'):
            dense_bench.check_goal(CONTROL, {'mIoU': learnt})
    assert dense_bench.summary_line(CONTROL, {'mIoU': 7.7, 'train_s': 480}) == f'{CONTROL}: mIoU 7.7 (goal < 30), ' \
                                                                               'trained in 480s'
    row = dense_bench.dense_table({CONTROL: {'mIoU': 7.7, 'train_s': 480, 'peak_mib': 1}}, '').splitlines()[4]
    assert row.startswith(f'| {CONTROL} |') and '| 7.7 | - | - | - | met |' in row


def test_the_control_trains_on_its_own_shuffled_copy(tmp_path):
    roots = dense_bench.write_data([CONTROL, 'EfficientMod-xxs FPN'], str(tmp_path), seed=1, **SMALL)
    real, shuffled = (tmp_path / 'dense_digits', tmp_path / 'dense_digits_shuffled')
    assert roots == {CONTROL: str(shuffled), 'EfficientMod-xxs FPN': str(real)}
    assert json.loads((shuffled / 'dense_digits.json').read_text())['shuffle_train_labels'] is True
    assert json.loads((real / 'dense_digits.json').read_text())['shuffle_train_labels'] is False
    names = sorted(os.listdir(real / 'ann_dir' / 'train'))
    maps = [[np.array(Image.open(root / 'ann_dir' / 'train' / n)) for n in names] for root in (real, shuffled)]
    assert any(a.shape != b.shape or (a != b).any() for a, b in zip(*maps, strict=True))  # the training labels moved
    for n in os.listdir(real / 'ann_dir' / 'val'):  # and val keeps the true ones
        assert (np.array(Image.open(real / 'ann_dir' / 'val' / n)) ==
                np.array(Image.open(shuffled / 'ann_dir' / 'val' / n))).all()
    only_control = dense_bench.write_data([CONTROL], str(tmp_path / 'c'), seed=1, **SMALL)
    assert os.listdir(tmp_path / 'c') == ['dense_digits_shuffled'] and list(only_control) == [CONTROL]


def test_saved_results_keep_rows_of_unchanged_configs_only(tmp_path, monkeypatch):
    """A table takes an earlier run's row only while that run's config is unchanged (comments aside)."""
    name = 'EfficientMod-xxs FPN'
    config = tmp_path / 'config.py'
    config.write_text('# a comment\nx = 1\n')
    monkeypatch.setattr(dense_bench, 'config_path', lambda _: str(config))
    run_dir = tmp_path / 'runs' / 'EfficientMod-xxs_FPN'
    run_dir.mkdir(parents=True)
    (run_dir / 'result.json').write_text(json.dumps({'mIoU': 72.9, 'config_sha256': dense_bench.config_digest(name)}))
    assert dense_bench.saved_results(str(tmp_path / 'runs'))[name]['mIoU'] == 72.9
    config.write_text('# another comment\nx = 1\n')
    assert name in dense_bench.saved_results(str(tmp_path / 'runs'))
    config.write_text('x = 2\n')
    assert dense_bench.saved_results(str(tmp_path / 'runs')) == {}


@pytest.mark.parametrize('name', TRAINED)
def test_every_run_has_a_fixed_seed(name):
    # without one mmengine draws a new seed each run, and the figures moved by 2-4 points from run to run
    assert load_config(dense_bench.config_path(name)).randomness.seed == 0


def test_quick_check_refuses_to_write_a_table(tmp_path, capsys):
    markdown = tmp_path / 'BENCHMARKS.md'
    markdown.write_text('<!-- dense:start -->\n<!-- dense:end -->\n')
    assert dense_bench.main(['--quick', '--update', str(markdown), '--work-dir', str(tmp_path / 'w')]) == 2
    assert '--quick figures mean nothing' in capsys.readouterr().err and not (tmp_path / 'w').exists()


def test_data_root_options_reach_loaders_and_evaluator():
    cfg = _config('GridPE-PVTv2-b0 RetinaNet', '/somewhere/dd')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.data_root == '/somewhere/dd/'
    assert cfg.test_evaluator.ann_file == cfg.val_evaluator.ann_file == '/somewhere/dd/annotations/instances_val.json'


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(dense_bench.DENSE_RUNS))
def test_dense_run_reaches_its_goal(name, tmp_path):
    metrics = dense_bench.run_dense(name, str(tmp_path / 'run'), dense_bench.write_data([name], str(tmp_path))[name])
    dense_bench.check_goal(name, metrics)
