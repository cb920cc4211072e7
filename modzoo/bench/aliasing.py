#!/usr/bin/env python
"""Aliasing measure of the SFM paper: share of feature power above the Nyquist limit of each stride-2 layer.

For a backbone and a folder of images, the input of every stride-2 stage transition is captured, without and with
adaptive resampling (ARS) in front of it. Per map: remove each channel's mean, apply a 2-D Hann window, take the power
spectrum, and average it over channels and images. A stride-2 layer keeps ``|f_y|, |f_x| <= 0.25`` cycles/pixel (its
new Nyquist limit); the power outside that square aliases. The script prints that share per stage for both settings
and saves a PNG with the spectra (power against the frequency ``max(|f_y|, |f_x|)``, Nyquist marked).

Settings for "with ARS" (``--ars``):
  * ``learned``: the ARS weights of a trained SFM model (``--sfm-checkpoint``, an ``SFM`` state_dict);
  * ``energy`` (default without a checkpoint): a training-free saliency, the local high-frequency energy of the
    feature (``mean_c (f - box3x3(f))^2``), which is what ARS is meant to learn to find; it shows what the warp does
    to the spectrum without training;
  * ``init``: freshly initialised ARS, i.e. the identity warp (a sanity check: both settings give the same numbers).

Random weights give features without natural-image statistics; pass ``--pretrained`` (timm weights, cached or
downloadable) or ``--checkpoint FILE`` for meaningful numbers. A trained SFM segmentor (configs/sfm/*) gives both its
ARS weights and its fine-tuned backbone: ``--sfm-checkpoint work_dirs/.../iter_160000.pth`` with ``--model-kwargs``
matching the config's backbone options.

    python tools/aliasing.py --model zoo_focalnet_tiny_srf --images data/ade/ADEChallengeData2016/images/validation \
        --size 512 --max-images 50 --pretrained --out aliasing.png
"""
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

import modzoo  # noqa: F401  (registers zoo_* models)
from modzoo.layers.sfm import SFM, AdaptiveResampler, find_stage_transitions
from modzoo.utils.cli import OneLineArgumentParser, UsageError, parse_model_kwargs
from modzoo.utils.files import atomic_write

from .report import check_json_output

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
# label-map folders of the mmseg layouts (ADE20K, Synapse, Cityscapes): skipped when searching a dataset root
LABEL_DIRS = ('annotations', 'ann_dir', 'gtFine')
NYQUIST_AFTER_STRIDE2 = 0.25  # cycles/pixel of the input grid


class EnergyResampler(AdaptiveResampler):
    """ARS with a training-free saliency: local high-frequency energy of the feature (channel mean)."""

    def saliency(self, x: torch.Tensor) -> torch.Tensor:
        high = x - F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        energy = high.square().mean(1, keepdim=True)
        energy = F.avg_pool2d(energy, 3, 1, 1, count_include_pad=False)
        return energy + 1e-6 * energy.mean((2, 3), keepdim=True).clamp_min(1e-12)


def list_images(folder: str, max_images: int) -> List[str]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in LABEL_DIRS]  # pruned in place, so os.walk does not descend
        files += [os.path.join(root, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    files.sort()
    if not files:
        raise SystemExit(f'No images ({", ".join(IMAGE_EXTENSIONS)}) under {folder}')
    return files[:max_images] if max_images > 0 else files


def load_image(path: str, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert('RGB').resize((size, size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.
    x = torch.from_numpy(arr).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


def power_spectrum(feature: torch.Tensor) -> torch.Tensor:
    """Mean (over batch and channels) power spectrum of an NCHW map, zero frequency centred."""
    f = feature.double()
    f = f - f.mean((2, 3), keepdim=True)
    h, w = f.shape[-2:]
    if min(h, w) > 2:  # a Hann window, so the map's edges do not leak power into every frequency
        window = torch.outer(torch.hann_window(h, periodic=False, dtype=f.dtype),
                             torch.hann_window(w, periodic=False, dtype=f.dtype))
    else:
        window = torch.ones(h, w, dtype=f.dtype)
    spec = torch.fft.fft2(f * window).abs().square().mean((0, 1))
    return torch.fft.fftshift(spec)


def frequency_radius(h: int, w: int) -> torch.Tensor:
    """max(|f_y|, |f_x|) in cycles/pixel for every bin of an fftshift-ed h x w spectrum."""
    fy = torch.fft.fftshift(torch.fft.fftfreq(h, dtype=torch.float64)).abs()
    fx = torch.fft.fftshift(torch.fft.fftfreq(w, dtype=torch.float64)).abs()
    return torch.maximum(fy[:, None], fx[None, :])


def share_above_nyquist(spectrum: torch.Tensor) -> float:
    total = spectrum.sum()
    if total <= 0:
        return float('nan')
    radius = frequency_radius(*spectrum.shape)
    return float(spectrum[radius > NYQUIST_AFTER_STRIDE2].sum() / total)


def spectrum_profile(spectrum: torch.Tensor):
    """(frequencies, share of the power) per frequency ring ``max(|f_y|, |f_x|)``, in steps of ``1 / max(h, w)``."""
    h, w = spectrum.shape
    n = max(h, w)
    bins = torch.round(frequency_radius(h, w) * n).long()
    profile = torch.zeros(n // 2 + 1, dtype=torch.float64).index_add_(0, bins.flatten(), spectrum.flatten())
    used = torch.zeros(n // 2 + 1, dtype=torch.bool).index_fill_(0, bins.flatten().unique(), True)
    share = profile / profile.sum().clamp_min(1e-300)
    freqs = torch.arange(n // 2 + 1, dtype=torch.float64) / n
    return freqs[used].numpy(), share[used].numpy()


class TransitionProbe:
    """Accumulates the power spectra of the inputs of the given transition modules (after any ARS hook)."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        self.names = list(names)
        self.spectra: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {n: 0 for n in names}
        # registered after SFM's hooks, so these pre-hooks see the resampled input
        self.handles = [modules[n].register_forward_pre_hook(self._hook(n)) for n in names]

    def _hook(self, name):
        def hook(module, args):
            spec = power_spectrum(args[0].detach())
            self.spectra[name] = self.spectra.get(name, 0) + spec * args[0].shape[0]
            self.counts[name] += args[0].shape[0]
        return hook

    def mean_spectra(self) -> List[torch.Tensor]:
        return [self.spectra[n] / self.counts[n] for n in self.names]

    def remove(self):
        for h in self.handles:
            h.remove()


def load_sfm_weights(sfm: SFM, path: str) -> bool:
    """Load ``resamplers.*`` (required) and ``backbone.*`` (if present) from a saved SFM state_dict.

    Also accepts an OpenMMLab checkpoint of an SFM segmentor (``ModzooBackbone(sfm=...)``: ``backbone.resamplers.*``
    and the network under ``backbone.model.*``, which loads into ``--model`` built with the config's options, see
    ``--model-kwargs``; layers the features-only backbone does not have, the classifier, keep their values).
    Returns whether backbone weights were loaded too.
    """
    from modzoo.models import CheckpointFileError, CheckpointMismatchError, fit_checkpoint, open_checkpoint
    try:
        state = open_checkpoint(path, prefix='').state_dict  # every tensor as written
    except CheckpointFileError as e:
        raise SystemExit(str(e)) from None
    if any(k.startswith('backbone.resamplers.') for k in state):  # SFM used as an mmseg backbone
        from modzoo.mm.pretrained import read_backbone_layout  # (the segmentor was trained with modzoo.mm)
        layout = read_backbone_layout({k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')})
        resamplers, backbone, network = layout.resamplers, {}, layout.network
    else:  # an SFM state_dict: resamplers.* and backbone.*
        resamplers = {k[len('resamplers.'):]: v for k, v in state.items() if k.startswith('resamplers.')}
        backbone, network = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}, {}
    if not resamplers:
        raise SystemExit(f'{path} holds no resamplers.* tensors (expected an SFM state_dict)')
    sfm.resamplers.load_state_dict(resamplers, strict=True)
    if not backbone and not network:
        print(f'{path}: ARS weights only; backbone weights from --pretrained/--checkpoint/--seed')
        return False
    try:
        # a whole SFM state_dict fits exactly; a segmentor's features network leaves the classifier as it is
        report = fit_checkpoint(backbone or network, sfm.backbone, strict=bool(backbone))
    except CheckpointMismatchError as e:
        raise SystemExit(f'{path}: {e}') from None
    if report.unexpected or report.mismatched:
        raise SystemExit(f'{path}: the backbone does not fit {type(sfm.backbone).__name__} as built '
                         f'({report.summary()}); pass the config\'s model options with --model-kwargs '
                         f'(e.g. focal_windows, out_norms=True)')
    sfm.backbone.load_state_dict(report.state_dict, strict=False)
    print(f'{path}: ARS weights and {len(report.loaded)} backbone tensors loaded; not in the checkpoint (kept): '
          f'{report.missing}')
    return True


def build_backbone(args) -> nn.Module:
    kwargs = {}
    if args.checkpoint:
        kwargs['pretrained_cfg_overlay'] = dict(file=args.checkpoint)
    try:
        kwargs.update(parse_model_kwargs(args.model_kwargs))
    except UsageError as e:  # one line, exit status 2, as argparse's own errors
        print(f'error: {e}', file=sys.stderr)
        raise SystemExit(2) from None
    model = timm.create_model(args.model, pretrained=args.pretrained or bool(args.checkpoint), **kwargs)
    return model.eval()


@torch.no_grad()
def measure(
        model: nn.Module, names: Sequence[str], images: List[str], size: int, batch_size: int) -> List[torch.Tensor]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    inner = getattr(model, 'backbone', model)
    cfg = getattr(inner, 'pretrained_cfg', None) or cfg
    mean, std = cfg.get('mean', (0.485, 0.456, 0.406)), cfg.get('std', (0.229, 0.224, 0.225))
    probe = TransitionProbe(model, names)
    try:
        for i in range(0, len(images), batch_size):
            batch = torch.stack([load_image(p, size, mean, std) for p in images[i:i + batch_size]])
            model(batch)
    finally:
        probe.remove()
    return probe.mean_spectra()


def plot(path: str, names: Sequence[str], plain: List[torch.Tensor], with_ars: List[torch.Tensor], label: str,
         title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name, a, b in zip(axes[0], names, plain, with_ars, strict=True):
        ax.semilogy(*spectrum_profile(a), 'o-', ms=3, label=f'without ARS ({share_above_nyquist(a):.1%} > Nyq.)')
        ax.semilogy(*spectrum_profile(b), 's--', ms=3, label=f'with ARS, {label} ({share_above_nyquist(b):.1%})')
        ax.axvline(NYQUIST_AFTER_STRIDE2, color='k', lw=0.8, ls=':')
        ax.set_title(f'before {name}\n{a.shape[0]}x{a.shape[1]} map', fontsize=9)
        ax.set_xlabel('max(|f_y|, |f_x|)  [cycles/pixel]')
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel('share of power per frequency ring')
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format='png', dpi=110)
    plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[float]]:
    parser = OneLineArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, help='timm or modzoo model name (4 stages, stride-2 transitions)')
    parser.add_argument('--images', required=True,
                        help='folder with images (searched recursively, skipping label folders such as annotations/)')
    parser.add_argument('--size', type=int, default=224, help='square input size')
    parser.add_argument('--max-images', type=int, default=32, help='0 = all')
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--pretrained', action='store_true', help='load timm pretrained weights')
    parser.add_argument('--checkpoint', default='', help='backbone weights file (loaded through timm)')
    parser.add_argument('--sfm-checkpoint', default='',
                        help='state_dict of a trained SFM-wrapped backbone, or an mmseg checkpoint of an SFM config')
    parser.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE',
                        help='model options, as the config builds the backbone (e.g. "focal_windows=(9,9,9,9)" '
                             'out_norms=True for configs/sfm/upernet_focalnet-t-srf_sfm_*)')
    parser.add_argument('--ars', choices=('learned', 'energy', 'init'), default=None,
                        help='ARS setting (default: learned with --sfm-checkpoint, else energy)')
    parser.add_argument('--min-density', type=float, default=0.125)
    parser.add_argument('--out', default='aliasing.png', help='PNG path for the spectrum plot')
    parser.add_argument('--seed', type=int, default=0, help='seed for randomly initialised weights')
    args = parser.parse_args(argv)
    ars = args.ars or ('learned' if args.sfm_checkpoint else 'energy')
    if ars == 'learned' and not args.sfm_checkpoint:
        parser.error('--ars learned needs --sfm-checkpoint')
    check_json_output(parser, args.out, '--out', inputs={'--checkpoint': args.checkpoint or None,
                                                         '--sfm-checkpoint': args.sfm_checkpoint or None})

    torch.manual_seed(args.seed)
    images = list_images(args.images, args.max_images)
    model = build_backbone(args)
    names = find_stage_transitions(model)
    resampler_layer = EnergyResampler if ars == 'energy' else AdaptiveResampler
    resampler_state, backbone_from_sfm = None, False
    if ars == 'learned':
        # the checkpoint may carry the trained backbone too: load it first, so both settings measure the same weights
        sfm = SFM(model, names, min_density=args.min_density, resampler_layer=resampler_layer)
        backbone_from_sfm = load_sfm_weights(sfm, args.sfm_checkpoint)
        resampler_state = sfm.resamplers.state_dict()
        model = sfm.remove().eval()
    plain = measure(model, names, images, args.size, args.batch_size)

    sfm = SFM(model, names, min_density=args.min_density, resampler_layer=resampler_layer).eval()
    if resampler_state is not None:
        sfm.resamplers.load_state_dict(resampler_state)
    with_ars = measure(sfm, ['backbone.' + n for n in names], images, args.size, args.batch_size)
    sfm.remove()

    weights = 'pretrained' if (args.pretrained or args.checkpoint) else f'random init (seed {args.seed})'
    if backbone_from_sfm:
        weights = os.path.basename(args.sfm_checkpoint)
    print(f'{args.model} ({weights}), {len(images)} image(s) at {args.size}x{args.size}, ARS: {ars}')
    print('share of feature power above the stride-2 Nyquist limit (|f| > 0.25 cycles/px), before each transition:')
    print(f'  {"transition":<32} {"map":>9} {"without ARS":>12} {"with ARS":>10}')
    result = {'without': [], 'with': []}
    for name, a, b in zip(names, plain, with_ars, strict=True):
        sa, sb = share_above_nyquist(a), share_above_nyquist(b)
        result['without'].append(sa)
        result['with'].append(sb)
        print(f'  {name:<32} {a.shape[0]:>4}x{a.shape[1]:<4} {sa:>12.2%} {sb:>10.2%}')
    plot(args.out, names, plain, with_ars, ars, f'{args.model} ({weights}), {len(images)} images, ARS: {ars}')
    print(f'spectrum plot: {args.out}')
    return result
