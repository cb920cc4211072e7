"""The dense digits writer (modzoo.dense_digits): deterministic, no scan in both splits, label maps that match the
pixels, COCO instances that match the label maps, the negative control's shuffled maps, and its command line."""
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('sklearn')

from modzoo.dense_digits import (BACKGROUND_MAX, INK_LEVEL, make_dense_digits,  # noqa: E402
                                 mask_to_rle, write_dense_digits)

SMALL = dict(num_train=8, num_val=4)


@pytest.fixture(scope='module')
def dense_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('dense') / 'digits')
    write_dense_digits(root, seed=3, **SMALL)
    return root


def _digest(root):
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            h.update(name.encode())
            with open(os.path.join(folder, name), 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


def _coco(root, split):
    with open(os.path.join(root, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def _rle_decode(rle):
    counts, (h, w) = rle['counts'], rle['size']
    values = np.concatenate([np.full(n, i % 2, bool) for i, n in enumerate(counts)])
    return values.reshape((w, h)).T


def test_same_seed_same_bytes_other_seed_other_canvases(dense_root, tmp_path):
    again = str(tmp_path / 'again')
    write_dense_digits(again, seed=3, **SMALL)
    assert _digest(again) == _digest(dense_root)
    other = str(tmp_path / 'other')
    write_dense_digits(other, seed=4, **SMALL)
    assert _digest(other) != _digest(dense_root)


def test_no_scan_in_both_splits(dense_root):
    with open(os.path.join(dense_root, 'dense_digits.json')) as f:
        sources = json.load(f)['sources']
    assert not set(sources['train']) & set(sources['val'])
    assert len(sources['train']) + len(sources['val']) == 1797
    used = {split: {a['source_index'] for a in _coco(dense_root, split)['annotations']} for split in ('train', 'val')}
    assert used['train'] <= set(sources['train']) and used['val'] <= set(sources['val'])
    assert not used['train'] & used['val']


def test_label_maps_match_the_pixels(dense_root):
    for split in ('train', 'val'):
        names = sorted(os.listdir(os.path.join(dense_root, 'img_dir', split)))
        assert len(names) == SMALL[f'num_{split}']
        for name in names:
            image = np.asarray(Image.open(os.path.join(dense_root, 'img_dir', split, name)).convert('L'))
            label = np.asarray(Image.open(os.path.join(dense_root, 'ann_dir', split, name)))
            assert label.shape == image.shape and 96 <= image.shape[0] <= 160 and label.max() <= 10
            # the label is what the image shows: a pixel is a digit's exactly when it is visibly ink
            np.testing.assert_array_equal(label > 0, image >= INK_LEVEL)
            assert BACKGROUND_MAX < INK_LEVEL and image[label == 0].max() < INK_LEVEL


def test_coco_instances_match_the_label_maps(dense_root):
    for split in ('train', 'val'):
        coco = _coco(dense_root, split)
        assert [c['id'] for c in coco['categories']] == list(range(1, 11))
        by_image = {}
        for ann in coco['annotations']:
            by_image.setdefault(ann['image_id'], []).append(ann)
        for image in coco['images']:
            label = np.asarray(Image.open(os.path.join(dense_root, 'ann_dir', split, image['file_name'])))
            anns = by_image[image['id']]
            assert 3 <= len(anns) <= 8
            union = np.zeros_like(label, bool)
            for ann in anns:
                mask = _rle_decode(ann['segmentation'])
                assert ann['iscrowd'] == 0 and ann['area'] == mask.sum() > 0
                assert (label[mask] == ann['category_id']).all()  # category id k = label k = digit k - 1
                ys, xs = np.nonzero(mask)
                assert ann['bbox'] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
                assert not (union & mask).any()
                union |= mask
            assert (union == (label > 0)).all()


def test_rle_is_column_major_and_starts_with_background():
    mask = np.array([[1, 0, 0], [1, 1, 0]], bool)  # columns: 1 1 | 0 1 | 0 0
    assert mask_to_rle(mask) == dict(size=[2, 3], counts=[0, 2, 1, 1, 2])
    assert mask_to_rle(~mask) == dict(size=[2, 3], counts=[2, 1, 1, 2])
    mask_utils = pytest.importorskip('pycocotools.mask')
    blob = np.random.default_rng(0).random((13, 17)) > 0.6
    assert (mask_utils.decode(mask_utils.frPyObjects(mask_to_rle(blob), 13, 17)) == blob).all()


def test_shuffled_control_moves_every_training_map(dense_root, tmp_path):
    control = str(tmp_path / 'control')
    write_dense_digits(control, seed=3, shuffle_train_labels=True, **SMALL)
    assert not os.path.exists(os.path.join(control, 'annotations'))
    names = sorted(os.listdir(os.path.join(dense_root, 'ann_dir', 'train')))
    true = [np.asarray(Image.open(os.path.join(dense_root, 'ann_dir', 'train', n))) for n in names]
    moved = [np.asarray(Image.open(os.path.join(control, 'ann_dir', 'train', n))) for n in names]
    for i, label in enumerate(moved):
        assert label.shape == true[i].shape and not np.array_equal(label, true[i])
    for split in ("val",):  # the held-out maps stay true, canvas for canvas
        for n in os.listdir(os.path.join(dense_root, 'ann_dir', split)):
            a, b = (np.asarray(Image.open(os.path.join(r, 'ann_dir', split, n))) for r in (dense_root, control))
            assert np.array_equal(a, b)


def test_command_line_refuses_a_foreign_folder_and_keeps_it(tmp_path, capsys):
    (tmp_path / 'mine.txt').write_text('keep')
    assert make_dense_digits([str(tmp_path), '--num-train', '2', '--num-val', '1']) == 2
    assert capsys.readouterr().err.startswith('error: ') and (tmp_path / 'mine.txt').read_text() == 'keep'
    assert sorted(os.listdir(tmp_path)) == ['mine.txt']


def test_command_line_other_settings_need_overwrite(tmp_path, capsys):
    root = str(tmp_path / 'd')
    assert make_dense_digits([root, '--num-train', '2', '--num-val', '1']) == 0
    assert make_dense_digits([root, '--num-train', '3', '--num-val', '1']) == 2
    assert 'overwrite' in capsys.readouterr().err
    assert len(os.listdir(os.path.join(root, 'img_dir', 'train'))) == 2
    assert make_dense_digits([root, '--num-train', '3', '--num-val', '1', '--overwrite']) == 0
    assert len(os.listdir(os.path.join(root, 'img_dir', 'train'))) == 3
