"""Training tools: losses, sampling, seeding, recipes, bad-input errors, and short in-process training runs.

The multi-process (torchrun) and kill/resume tests live in test_train_ddp.py and test_train_resume.py.
"""
import glob
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

import modzoo
from modzoo.train.config import ConfigError, load_recipe, parse_train_args
from modzoo.train.data import ResumableShardSampler, SeededDataset, build_dataset
from modzoo.train.loss import DistillationLoss, build_criterion
from modzoo.train.trainer import load_initial_weights, main as train_main
from modzoo.train.validate import main as validate_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, 'configs', 'imagenet')
TINY = ['--model', 'zoo_focalnet_tiny_srf', '--model-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)']
FAST = ['--img-size', '32', '--crop-pct', '1.0', '--workers', '0', '--threads', '1', '--warmup-epochs', '0',
        '--lr', '3e-3', '-b', '4', '--color-jitter', 'none', '--hflip', '0', '--progress', 'off']


def write_pattern_folder(root, classes=3, train=6, val=3, size=32, seed=0):
    """Tiny learnable ImageFolder: class k = stripes at angle k*60 deg, random phase and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for split, n in (('train', train), ('val', val)):
        for k in range(classes):
            os.makedirs(os.path.join(root, split, f'class{k}'), exist_ok=True)
            angle = np.pi * k / classes
            for i in range(n):
                wave = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.8 + rng.uniform(0, 6.3))
                img = np.clip(127 + 100 * wave + rng.normal(0, 20, wave.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).convert('RGB').save(os.path.join(root, split, f'class{k}', f'{i}.png'))
    return str(root)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return write_pattern_folder(tmp_path_factory.mktemp('data'))


# ---------------------------------------------------------------------------------------------------------------
# losses


def test_distillation_loss_is_efficientmods_formula():
    torch.manual_seed(0)
    teacher = nn.Linear(5, 4)
    student_logits = torch.randn(6, 4, requires_grad=True)
    inputs, targets = torch.randn(6, 5), torch.randint(0, 4, (6,))
    for alpha, tau in ((0.9, 1.0), (0.5, 2.0)):
        loss = DistillationLoss(nn.CrossEntropyLoss(), teacher, alpha, tau)(inputs, student_logits, targets)
        t = teacher(inputs).detach()
        p_t = F.softmax(t / tau, -1)
        kl = (p_t * (F.log_softmax(t / tau, -1) - F.log_softmax(student_logits / tau, -1))).sum(-1).mean()
        expected = (1 - alpha) * F.cross_entropy(student_logits, targets) + alpha * tau ** 2 * kl
        torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher.weight.grad is None and not teacher.weight.requires_grad  # the teacher is frozen
    only_ce = DistillationLoss(nn.CrossEntropyLoss(), teacher, 0.0)(inputs, student_logits, targets)
    torch.testing.assert_close(only_ce, F.cross_entropy(student_logits, targets))


def test_distillation_refuses_a_teacher_with_other_classes():
    loss = DistillationLoss(nn.CrossEntropyLoss(), nn.Linear(5, 7))
    with pytest.raises(ValueError, match='same classes'):
        loss(torch.randn(2, 5), torch.randn(2, 4), torch.tensor([0, 1]))


def test_criterion_choice():
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
    assert isinstance(build_criterion(0.1, mixup_active=True).base, SoftTargetCrossEntropy)
    assert isinstance(build_criterion(0.1).base, LabelSmoothingCrossEntropy)
    assert isinstance(build_criterion(0.0).base, nn.CrossEntropyLoss)
    assert isinstance(build_criterion(0.1, teacher=nn.Linear(2, 2)), DistillationLoss)


# ---------------------------------------------------------------------------------------------------------------
# sampling and seeding


@pytest.mark.parametrize('n, world', [(10, 1), (10, 3), (7, 2)])
def test_eval_sampler_covers_each_sample_once(n, world):
    shards = [list(ResumableShardSampler(n, world, r, shuffle=False, pad=False)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))


def test_train_sampler_pads_shuffles_per_epoch_and_resumes():
    samplers = [ResumableShardSampler(10, 3, r, seed=1) for r in range(3)]
    first = [list(s) for s in samplers]
    assert all(len(s) == 4 for s in first) and set(i for s in first for i in s) == set(range(10))
    for s in samplers:
        s.set_epoch(1)
    assert [list(s) for s in samplers] != first
    s = ResumableShardSampler(10, 3, 0, seed=1)
    s.set_epoch(1)
    full = list(s)
    s.set_start(3)
    assert list(s) == full[3:] and len(s) == len(full) - 3


def test_randaugment_posterize_at_full_magnitude_works_with_new_pillow():
    from timm.data.auto_augment import AugmentOp
    from modzoo.train.data import patch_timm_posterize
    patch_timm_posterize()
    img = Image.new('RGB', (8, 8), (200, 100, 50))
    op = AugmentOp('PosterizeIncreasing', prob=1.0, magnitude=10)  # keeps 0 bits: Pillow 13 alone raises
    assert np.asarray(op(img)).max() == 0
    assert np.asarray(AugmentOp('PosterizeIncreasing', prob=1.0, magnitude=5)(img)).max() == 192  # 2 bits kept


def test_seeded_dataset_augments_by_position_not_by_history(folder):
    from timm.data import create_transform
    from modzoo.train.data import patch_timm_posterize
    patch_timm_posterize()
    ds, _ = build_dataset('', folder, 'train')
    ds.transform = create_transform(32, is_training=True, scale=(0.3, 1.0), auto_augment='rand-m9-mstd0.5-inc1',
                                    re_prob=0.5)
    seeded = SeededDataset(ds, seed=3)
    a = seeded[2][0]
    torch.rand(100), np.random.rand(7)  # unrelated draws in between
    seeded[5]
    assert torch.equal(seeded[2][0], a)
    seeded.set_epoch(1)
    assert not torch.equal(seeded[2][0], a)


# ---------------------------------------------------------------------------------------------------------------
# recipes


def _recipe_files():
    return sorted(glob.glob(os.path.join(RECIPES, '*', '*.yaml')))


def test_every_registered_model_has_a_recipe_and_every_recipe_parses():
    names = {}
    for path in _recipe_files():
        options, meta = load_recipe(path)
        assert meta.get('source'), f'{path} cites no source'
        names.setdefault(options['model'], []).append(path)
        family = os.path.basename(os.path.dirname(path))
        assert options['model'].startswith(f'zoo_{family}_'), path
        argv = ['--config', path, '--data-dir', '/data/imagenet']
        for opt in meta.get('must_set') or []:
            argv += ['--' + opt.replace('_', '-'), '1' if opt != 'initial_checkpoint' and opt != 'teacher_checkpoint'
                     else 'weights.pth']
        args = parse_train_args(argv)
        assert args.model == options['model'] and args.epochs > 0
    registered = set(modzoo.list_models())
    families = {modzoo.model_family(n) for n in registered}
    missing = sorted(registered - set(names))
    assert not missing, f'registered models without a configs/imagenet recipe: {missing}'
    unknown = sorted(n for n in names if n.split('_')[1] in families and n not in registered)
    assert not unknown, f'recipes naming unregistered models: {unknown}'


def test_recipe_must_set_and_unknown_keys(tmp_path):
    must = os.path.join(RECIPES, 'efficientmod', 'xxs.yaml')
    with pytest.raises(ConfigError, match='--teacher-checkpoint'):
        parse_train_args(['--config', must, '--data-dir', 'x'])
    args = parse_train_args(['--config', must, '--data-dir', 'x', '--teacher-checkpoint', 't.pth', '--epochs', '3'])
    assert args.epochs == 3 and args.kd_alpha == 0.9 and args.teacher == 'regnety_160' and args.lr_base == 4e-3
    bad = tmp_path / 'bad.yaml'
    bad.write_text('model: zoo_focalnet_tiny_srf\nwarmup_epoch: 3\n')
    with pytest.raises(ConfigError, match="unknown option 'warmup_epoch'.*warmup_epochs"):
        parse_train_args(['--config', str(bad), '--data-dir', 'x'])


# ---------------------------------------------------------------------------------------------------------------
# bad input: one clear line on stderr and exit status 2


def test_missing_dataset_folder(tmp_path, capsys):
    assert train_main(TINY + FAST + ['--data-dir', str(tmp_path / 'nowhere'), '--output', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert 'Dataset folder not found' in err and 'nowhere' in err and '<class>' in err


def test_missing_split_and_empty_classes(tmp_path, capsys):
    (tmp_path / 'd' / 'train').mkdir(parents=True)
    (tmp_path / 'd' / 'validation').mkdir()
    assert train_main(TINY + FAST + ['--data-dir', str(tmp_path / 'd'), '--output', str(tmp_path / 'o')]) == 2
    assert 'no class sub-folders' in capsys.readouterr().err


def test_unknown_model_suggests_names(folder, tmp_path, capsys):
    assert train_main(['--model', 'zoo_focalnet_tiny_sfr', '--data-dir', folder, '--output', str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'zoo_focalnet_tiny_sfr'" in err and 'zoo_focalnet_tiny_srf' in err
    assert not os.listdir(tmp_path)  # failed before writing anything


def test_train_validate_resume_other_model_and_kd(folder, tmp_path, capsys):
    """Two short runs in-process: plain, then distilled from the first; validate; refuse foreign resumes."""
    out = tmp_path / 'run'
    assert train_main(TINY + FAST + ['--data-dir', folder, '--output', str(out), '--epochs', '2', '--model-ema',
                                     '--model-ema-decay', '0.9']) == 0
    assert sorted(os.listdir(out)) == ['args.yaml', 'best.pth', 'last.pth', 'log.csv']
    ckpt = torch.load(out / 'last.pth', weights_only=True)  # loads without unpickling code
    assert ckpt['epoch'] == 2 and ckpt['step'] == 2 * (18 // 4) and 'state_dict_ema' in ckpt
    assert ckpt['class_to_idx'] == {'class0': 0, 'class1': 1, 'class2': 2}
    record = ckpt['modzoo_model']  # the model record every modzoo checkpoint carries
    assert record['architecture'] == 'zoo_focalnet_tiny_srf' and record['kwargs']['embed_dim'] == 8
    assert 'tag' not in record and 'source_sha256' not in record  # from scratch

    # a run started from a file records that file's sha256
    from modzoo.hub import sha256_of
    assert train_main(TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path / 'ft'), '--epochs', '1',
                                     '--initial-checkpoint', str(out / 'best.pth')]) == 0
    record = torch.load(tmp_path / 'ft' / 'last.pth', weights_only=True)['modzoo_model']
    assert record['source_sha256'] == sha256_of(str(out / 'best.pth'))

    # validate.py on the EMA weights, reproducing the run's own last EMA evaluation
    import csv
    with open(out / 'log.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [0, 1]
    assert validate_main(['--model', 'zoo_focalnet_tiny_srf', '--checkpoint', str(out / 'last.pth'),
                          '--data-dir', folder, '--workers', '0']) == 0
    printed = capsys.readouterr().out
    assert f'top1 {float(rows[-1]["ema_top1"]):.2f}' in printed and 'img/s' in printed

    # resuming with another model or head size is refused with the reason
    assert train_main(['--model', 'zoo_focalnet_tiny_lrf', '--data-dir', folder, '--output', str(tmp_path / 'x'),
                       '--resume', str(out / 'last.pth')] + FAST) == 2
    err = capsys.readouterr().err
    assert "written for model 'zoo_focalnet_tiny_srf'" in err and 'zoo_focalnet_tiny_lrf' in err
    assert train_main(TINY[:2] + ['--data-dir', folder, '--output', str(tmp_path / 'x'),
                                  '--resume', str(out / 'last.pth')] + FAST) == 2
    assert '--model-kwargs were' in capsys.readouterr().err
    # a weights-only file (not a training checkpoint) cannot be resumed
    torch.save({'state_dict': ckpt['state_dict']}, tmp_path / 'weights.pth')
    assert train_main(TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path / 'x'),
                                     '--resume', str(tmp_path / 'weights.pth')]) == 2
    assert '--initial-checkpoint' in capsys.readouterr().err

    # distillation: the first run is the teacher; a teacher without weights is refused
    kd = TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path / 'kd'), '--epochs', '1',
                        '--teacher', 'zoo_focalnet_tiny_srf', '--teacher-kwargs', 'embed_dim=8', 'depths=(1,1,1,1)']
    assert train_main(kd) == 2
    assert '--teacher-checkpoint' in capsys.readouterr().err
    # with mixup/cutmix, gradient checkpointing, channels-last, bf16 autocast and the rank-0 progress bar
    assert train_main(kd + ['--teacher-checkpoint', str(out / 'best.pth'), '--mixup', '0.8', '--cutmix', '1.0',
                            '--grad-checkpointing', '--channels-last', '--amp', '--progress', 'on']) == 0
    assert os.path.isfile(tmp_path / 'kd' / 'last.pth')
    assert 'epoch 0' in capsys.readouterr().err  # tqdm bar


def test_bad_runtime_options(folder, tmp_path, capsys):
    base = TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path), '--epochs', '1']
    assert train_main(base + ['--amp', '--amp-dtype', 'float16', '--device', 'cpu']) == 2
    assert 'float16 needs a CUDA device' in capsys.readouterr().err
    assert train_main(base + ['-b', '64']) == 2  # 18 training images
    assert 'larger than the 18 training images' in capsys.readouterr().err
    assert train_main(base + ['--class-map', str(tmp_path / 'missing.txt')]) == 2
    assert '--class-map file not found' in capsys.readouterr().err


def test_tensorboard_events_when_installed(folder, tmp_path, capsys):
    import importlib.util
    if importlib.util.find_spec('tensorboard') is None:
        assert train_main(TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path), '--epochs', '1',
                                         '--tensorboard', 'on']) == 2
        assert 'pip install tensorboard' in capsys.readouterr().err
        return
    assert train_main(TINY + FAST + ['--data-dir', folder, '--output', str(tmp_path), '--epochs', '1',
                                     '--tensorboard', 'on']) == 0
    assert glob.glob(str(tmp_path / 'tensorboard' / 'events.out.tfevents.*'))


def test_initial_checkpoint_replaces_only_a_mismatched_head():
    src = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=7)
    dst = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=3)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, 'w.pth')
        torch.save({'model': src.state_dict()}, path)
        assert load_initial_weights(dst, path) == ['head.fc.weight', 'head.fc.bias']
        for k, v in src.state_dict().items():
            if not k.startswith('head.fc'):
                assert torch.equal(v, dst.state_dict()[k]), k
        other = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=16, depths=(1, 1, 1, 1), num_classes=3)
        with pytest.raises(modzoo.CheckpointMismatchError, match='shape mismatch'):
            load_initial_weights(other, path)


def test_onnx_check_and_ort_accuracy(folder, tmp_path):
    """The main job's parity check exports through modzoo.export, compares ORT at batch 1 and 3, and measures top-1."""
    from modzoo.train.data import build_loader, build_transforms, resolve_model_data_config
    from modzoo.main_job import export_and_check, onnx_accuracy
    model = modzoo.create_model('zoo_focalnet_tiny_srf', embed_dim=8, depths=(1, 1, 1, 1), num_classes=3).eval()
    r = export_and_check(model, str(tmp_path / 'm.onnx'), (32, 32))
    assert r['backend'] == 'modzoo.export' and r['passed'] and sorted({run[1] for run in r['runs']}) == [1, 3]
    ds, _ = build_dataset('', folder, 'val')
    _, ds.transform = build_transforms(resolve_model_data_config(model, dict(img_size=32, crop_pct=1.0)))
    loader = build_loader(ds, ResumableShardSampler(len(ds), shuffle=False, pad=False), 4, 0, False)
    with torch.no_grad():
        expected = sum(int((model(x).argmax(-1) == y).sum()) for x, y in loader) / len(ds) * 100
    assert abs(onnx_accuracy(r['path'], loader)['top1'] - expected) < 1e-6
