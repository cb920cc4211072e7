"""SFM add-ons: adaptive resampling before stride-2 layers and adaptive up-sampling back onto the uniform grid.

Spatial Frequency Modulation (Chen et al., TPAMI 2025, arXiv 2507.11893) stretches high-frequency regions before a
stride-2 layer so less of their power lies above the new Nyquist limit, and undoes the stretch when up-sampling. The
official code is not public; this is the modzoo design from the paper's principle, not the authors' layers:

* :class:`AdaptiveResampler` (ARS): a light head (depthwise 3x3 -> GELU -> 1x1 -> softplus) predicts a positive
  saliency map. Per axis, the marginal saliency is a density over the input cells; its normalised cumulative sum
  ``phi`` maps input coordinates to modulated ones (``phi' ~ density``: salient regions are stretched). The modulated
  feature samples the input at ``phi^-1`` of the output pixel centres by bilinear sampling at the same resolution
  (:func:`sample_separable`: ``grid_sample`` on the separable grid, done as two exact 1-D passes), i.e. densely where
  saliency is high. ``phi`` is strictly increasing (density > 0), so the warp is
  order-preserving on both axes by construction (no folding). The head's last conv is zero-initialised: the density is
  uniform, ``phi`` is exactly the identity (integer cumulative sums), the samples land exactly on the pixel centres,
  and inserting ARS into a pretrained backbone leaves its outputs bit for bit unchanged.
* :class:`SeparableWarp`: the recorded warp (``phi`` as piecewise-linear knots per axis and sample). It evaluates
  ``phi`` and ``phi^-1`` exactly at any resolution, so demodulation needs no triangulation.
* :class:`AdaptiveUpsampler` (MSAU): walks the recorded warps coarse to fine; at each scale it resamples the map onto
  the finer uniform grid at ``phi`` of the pixel centres (the exact inverse of the modulation) and then refines it with
  a local content-aware reassembly (CARAFE-like softmax kernels predicted from the map, an optional guide feature and
  the warp's local magnification) through a zero-initialised per-channel gate, so at initialisation MSAU is the plain
  inverse warp (bilinear x2 steps for identity warps).
* :class:`SFM`: wraps a 4-stage backbone and puts an ARS in front of each of its stride-2 stage transitions.

The ARS modules are attached with forward pre-hooks on the transition modules, and held by the wrapper (``resamplers``)
rather than inserted into the backbone, so the backbone's ``state_dict`` keys do not change: a plain backbone checkpoint
loads into ``sfm.backbone`` strictly, and the wrapper's own keys are ``backbone.*`` plus ``resamplers.*``.
"""
import re
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    'SeparableWarp', 'AdaptiveResampler', 'ContentReassembly', 'AdaptiveUpsampler', 'SFM', 'SFMError',
    'find_stage_transitions', 'demodulate', 'demodulation_grid', 'demodulation_positions', 'sample_separable',
    'record_warps',
]


class SFMError(ValueError):
    """The backbone cannot take SFM (no stride-2 transitions found, or they do not take NCHW input)."""


class SeparableWarp:
    """A monotone separable warp ``(phi_y, phi_x)`` of the unit square, recorded per sample.

    ``cum_y`` (N, H+1) and ``cum_x`` (N, W+1) are the cumulative densities at the cell edges of the resolution the
    warp was made at (``cum[:, 0] == 0``, strictly increasing). ``phi(t) = cum(t * n) / cum[n]`` for ``t`` in [0, 1]
    (piecewise linear, exact at the edges): input coordinate -> modulated coordinate. All coordinates here are
    normalised to [0, 1] over the image extent, with pixel centres at ``(k + 0.5) / n`` (``align_corners=False``), so a
    warp made at one resolution can be applied at any other.
    """

    def __init__(self, cum_y: torch.Tensor, cum_x: torch.Tensor):
        self.cum_y = cum_y
        self.cum_x = cum_x

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W) of the map the warp was made for (the input of the stride-2 layer)."""
        return self.cum_y.shape[1] - 1, self.cum_x.shape[1] - 1

    def _cum(self, axis: int) -> torch.Tensor:
        return self.cum_y if axis == 0 else self.cum_x

    def forward_map(self, axis: int, t: torch.Tensor) -> torch.Tensor:
        """``phi(t)``: input coordinates ``t`` (N, m) in [0, 1] -> modulated coordinates."""
        cum = self._cum(axis)
        n = cum.shape[1] - 1
        pos = (t * n).clamp(0, n)
        idx = pos.floor().clamp(max=n - 1).long()
        frac = pos - idx
        lo = cum.gather(1, idx)
        hi = cum.gather(1, idx + 1)
        return (lo + frac * (hi - lo)) / cum[:, n:]

    def _inverse_cells(self, axis: int, mass: torch.Tensor) -> torch.Tensor:
        # the cell where the cumulative density reaches `mass`, plus the linear fraction inside it (exact inverse of
        # the piecewise-linear phi); searchsorted picks the cell, the gathers keep the result differentiable
        cum = self._cum(axis)
        n = cum.shape[1] - 1
        idx = torch.searchsorted(cum.detach().contiguous(), mass.detach().contiguous(), right=True) - 1
        idx = idx.clamp(0, n - 1)
        lo = cum.gather(1, idx)
        hi = cum.gather(1, idx + 1)
        return idx + (mass - lo) / (hi - lo)

    def inverse_map(self, axis: int, s: torch.Tensor) -> torch.Tensor:
        """``phi^-1(s)``: modulated coordinates ``s`` (N, m) in [0, 1] -> input coordinates (exact, piecewise
        linear)."""
        cum = self._cum(axis)
        n = cum.shape[1] - 1
        return self._inverse_cells(axis, s.clamp(0, 1) * cum[:, n:]) / n

    def inverse_at_centres(self, axis: int, m: int) -> torch.Tensor:
        """``phi^-1`` at the pixel centres of an ``m``-pixel grid, in *cells* of the warp's own grid (``[0, n]``).

        The mass is computed as ``(k + 0.5) * (total / m)``: for a uniform density (exact integer cumsum) and
        ``m == n`` every step is exact, so the identity warp lands exactly on the pixel centres ``k + 0.5``.
        """
        cum = self._cum(axis)
        n = cum.shape[1] - 1
        centres = torch.arange(m, device=cum.device, dtype=cum.dtype) + 0.5
        return self._inverse_cells(axis, centres[None] * (cum[:, n:] / m))

    def modulation_grid(self, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """``grid_sample`` grid (N, h, w, 2) that modulates a map: output pixel centre ``s`` reads ``phi^-1(s)``."""
        h, w = size or self.size
        gy = self.inverse_at_centres(0, h) * (2 / self.size[0]) - 1
        gx = self.inverse_at_centres(1, w) * (2 / self.size[1]) - 1
        return _separable_grid(gy, gx)

    def magnification(self, axis: int, t: torch.Tensor) -> torch.Tensor:
        """Local stretch ``phi'(t)`` (1 = uniform; > 1 where the map was densely sampled) at coordinates ``t``."""
        cum = self._cum(axis)
        n = cum.shape[1] - 1
        idx = (t * n).floor().clamp(0, n - 1).long()
        return (cum.gather(1, idx + 1) - cum.gather(1, idx)) * n / cum[:, n:]


def sample_separable(x: torch.Tensor, pos_y: torch.Tensor, pos_x: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of ``x`` (N, C, H, W) on the separable grid ``pos_y`` (N, h) x ``pos_x`` (N, w).

    Positions are in ``x``'s pixel coordinates (centres at integers) and are clamped to the map (border padding). This
    equals ``F.grid_sample(x, grid, 'bilinear', 'border', align_corners=False)`` on the same grid (bilinear
    interpolation is separable), done as two 1-D passes: cheaper, and exact wherever a position is an integer, so an
    identity warp returns its input bit for bit (grid_sample's own coordinate arithmetic is off by ~n * 1e-7 px).
    """
    return _lerp_axis(_lerp_axis(x, pos_x, 3), pos_y, 2)


def _lerp_axis(x: torch.Tensor, pos: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    # positions stay in (at least) float32: in half precision a position like 100.3 would lose its fraction
    pos = pos.to(torch.promote_types(pos.dtype, torch.float32)).clamp(0, n - 1)
    i0 = pos.detach().floor().long().clamp(max=max(n - 2, 0))
    i1 = (i0 + 1).clamp(max=n - 1)
    frac = (pos - i0).to(x.dtype)
    shape = [x.shape[0], 1, 1, 1]
    shape[dim] = pos.shape[1]
    expanded = list(x.shape)
    expanded[dim] = pos.shape[1]
    x0 = x.gather(dim, i0.view(shape).expand(expanded))
    x1 = x.gather(dim, i1.view(shape).expand(expanded))
    return torch.lerp(x0, x1, frac.view(shape))


def _centres(m: int, ref: torch.Tensor) -> torch.Tensor:
    return ((torch.arange(m, device=ref.device, dtype=ref.dtype) + 0.5) / m)[None]


def _separable_grid(gy: torch.Tensor, gx: torch.Tensor) -> torch.Tensor:
    """(N, h) y and (N, w) x coordinates in [-1, 1] -> a (N, h, w, 2) ``grid_sample`` grid (x first)."""
    n, h, w = gy.shape[0], gy.shape[1], gx.shape[1]
    return torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], dim=-1)


def demodulation_positions(
        warps: Union[SeparableWarp, Sequence[SeparableWarp]],
        size: Tuple[int, int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Normalised positions (N, h), (N, w) in the modulated domain that the uniform ``size`` grid reads.

    The uniform pixel centre ``t`` reads the modulated map at ``phi_K(...phi_1(t))`` (exact inverse of the modulations
    ``warps``, applied in order; a single warp is the one-step case).
    """
    if isinstance(warps, SeparableWarp):
        warps = [warps]
    if not warps:
        raise ValueError('demodulation needs at least one warp')
    ref = warps[0].cum_y
    batch = ref.shape[0]
    ty = _centres(size[0], ref).expand(batch, -1)
    tx = _centres(size[1], ref).expand(batch, -1)
    for warp in warps:
        ty = warp.forward_map(0, ty)
        tx = warp.forward_map(1, tx)
    return ty, tx


def demodulation_grid(warps: Union[SeparableWarp, Sequence[SeparableWarp]], size: Tuple[int, int]) -> torch.Tensor:
    """The ``grid_sample`` grid (N, h, w, 2) of :func:`demodulation_positions`."""
    ty, tx = demodulation_positions(warps, size)
    return _separable_grid(ty * 2 - 1, tx * 2 - 1)


def demodulate(
        x: torch.Tensor,
        warps: Union[SeparableWarp, Sequence[SeparableWarp]],
        size: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Resample ``x`` (living in the domain of ``warps``) onto a uniform grid of ``size`` (default: ``x``'s size).

    With one warp and ``size = warp.size`` this is the exact inverse of that warp's modulation (up to interpolation).
    A pyramid level after K transitions lives in the domain of the first K warps; this brings it back in one step.
    ``x`` may have any resolution: coordinates are normalised to the image extent.
    """
    ty, tx = demodulation_positions(warps, tuple(size or x.shape[-2:]))
    h, w = x.shape[-2:]
    return sample_separable(x, ty * h - 0.5, tx * w - 0.5)


class AdaptiveResampler(nn.Module):
    """ARS: saliency head -> separable order-preserving warp -> same-resolution bilinear resampling.

    Args:
        in_chs: channels of the map it resamples.
        min_density: floor of the per-axis density relative to its maximum, which bounds the local stretch to
            ``1 / min_density`` (default 1/8, a power of two so that a uniform density stays exactly uniform).

    ``forward(x)`` returns ``(modulated x, warp)``. The warp is kept for demodulation; inside :class:`SFM` the last
    warp is recorded while ``recording`` is set.
    """

    def __init__(self, in_chs: int, min_density: float = 0.125):
        super().__init__()
        if not 0. < min_density <= 1.:
            raise ValueError(f'min_density must be in (0, 1], got {min_density}')
        self.in_chs = in_chs
        self.min_density = min_density
        self.saliency_dw = nn.Conv2d(in_chs, in_chs, 3, padding=1, groups=in_chs)
        self.saliency_act = nn.GELU()
        self.saliency_proj = nn.Conv2d(in_chs, 1, 1)
        self.recording = False
        self.last_warp: Optional[SeparableWarp] = None
        self.reset_parameters()

    def reset_parameters(self):
        # a constant saliency is a uniform density, i.e. the identity warp: inserting ARS changes nothing until trained
        nn.init.zeros_(self.saliency_proj.weight)
        nn.init.zeros_(self.saliency_proj.bias)

    def saliency(self, x: torch.Tensor) -> torch.Tensor:
        """Positive saliency map (N, 1, H, W)."""
        return F.softplus(self.saliency_proj(self.saliency_act(self.saliency_dw(x))))

    def warp_from_saliency(self, saliency: torch.Tensor) -> SeparableWarp:
        """The separable warp of a positive (N, 1, H, W) saliency map: per-axis marginals -> cumulative knots."""
        if saliency.dim() != 4 or saliency.shape[1] != 1:
            raise ValueError(f'saliency must be (N, 1, H, W), got {list(saliency.shape)}')
        saliency = saliency.float()  # cumulative sums in half precision would be far off
        cums = []
        for marginal in (saliency.mean(3)[:, 0], saliency.mean(2)[:, 0]):  # over x -> density along y; over y -> x
            # relative to the max: a uniform marginal becomes exactly 1, so its cumsum is exact integers
            density = marginal / marginal.amax(1, keepdim=True)
            if self.min_density < 1:
                density = self.min_density + (1 - self.min_density) * density
            else:
                density = torch.ones_like(density)
            cums.append(F.pad(density.cumsum(1), (1, 0)))
        return SeparableWarp(cums[0], cums[1])

    def resample(self, x: torch.Tensor, warp: SeparableWarp) -> torch.Tensor:
        """Bilinear same-resolution resampling at ``phi^-1`` of the pixel centres (:func:`sample_separable`, i.e.
        ``grid_sample`` on :meth:`SeparableWarp.modulation_grid`, exact for the identity warp)."""
        h, w = x.shape[-2:]
        if (h, w) != warp.size:
            raise ValueError(f'warp made for {warp.size}, map is {(h, w)}')
        y = sample_separable(x, warp.inverse_at_centres(0, h) - 0.5, warp.inverse_at_centres(1, w) - 0.5)
        if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # keep the layout the next layer was given (e.g. after permuted norms): a different layout can pick a
            # different conv kernel, which breaks bit-exactness of the identity warp
            y = y.contiguous(memory_format=torch.channels_last)
        return y

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, SeparableWarp]:
        if x.dim() != 4 or x.shape[1] != self.in_chs:
            raise ValueError(
                f'AdaptiveResampler was built for NCHW input with {self.in_chs} channels, got shape {list(x.shape)} '
                f'(a transition module that takes channels-last input cannot take SFM)')
        warp = self.warp_from_saliency(self.saliency(x))
        return self.resample(x, warp), warp

    def _pre_hook(self, module: nn.Module, args: tuple):
        # forward pre-hook on the wrapped transition: swap its first input for the modulated one (a bound method, so
        # deepcopy/pickle of the wrapper rebinds it to the copied resampler)
        x, warp = self(args[0])
        if self.recording:
            self.last_warp = warp
        return (x,) + tuple(args[1:])

    def extra_repr(self) -> str:
        return f'in_chs={self.in_chs}, min_density={self.min_density}'


class ContentReassembly(nn.Module):
    """Local content-aware reassembly (CARAFE-like) at the same resolution, gated to start as the identity.

    A ``k x k`` softmax kernel per pixel is predicted from the map, an optional guide feature and the log local
    magnification of the warp it was just demodulated through (so densely and sparsely sampled areas can weigh their
    neighbours differently). Output: ``x + gamma * (reassembled - x)`` with a per-channel ``gamma`` initialised to 0.
    """

    def __init__(self, chs: int, kernel_size: int = 3, guide_chs: int = 0, hidden_chs: int = 32):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be odd, got {kernel_size}')
        self.kernel_size = kernel_size
        self.guide_chs = guide_chs
        self.kernel_in = nn.Conv2d(chs + guide_chs + 1, hidden_chs, 1)
        self.kernel_act = nn.GELU()
        self.kernel_out = nn.Conv2d(hidden_chs, kernel_size * kernel_size, 3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(chs))

    def forward(
            self,
            x: torch.Tensor,
            log_magnification: torch.Tensor,
            guide: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        parts = [x, log_magnification.to(x.dtype)]
        if self.guide_chs:
            if guide is None:
                raise ValueError(f'this reassembly was built with a {self.guide_chs}-channel guide; pass guide=')
            if guide.shape[-2:] != x.shape[-2:]:
                guide = F.interpolate(guide, size=x.shape[-2:], mode='bilinear', align_corners=False)
            parts.insert(1, guide)
        kernels = self.kernel_out(self.kernel_act(self.kernel_in(torch.cat(parts, dim=1)))).softmax(dim=1)
        k = self.kernel_size
        h, w = x.shape[-2:]
        padded = F.pad(x, (k // 2,) * 4, mode='replicate')
        reassembled = torch.zeros_like(x)
        for j in range(k * k):  # a loop over offsets keeps memory at one map instead of unfold's k*k copies
            dy, dx = divmod(j, k)
            reassembled = reassembled + padded[:, :, dy:dy + h, dx:dx + w] * kernels[:, j:j + 1]
        return x + self.gamma.view(1, -1, 1, 1) * (reassembled - x)


class AdaptiveUpsampler(nn.Module):
    """MSAU: demodulate a map through the recorded warps, coarse to fine, with a reassembly after each step.

    Args:
        chs: channels of the map (decoder features or class logits).
        num_scales: number of warps it can walk (3 for the three transitions of a 4-stage backbone).
        kernel_size: reassembly kernel (3 or 5).
        guide_chs: optional channels of a guide feature per scale (e.g. the backbone level at that resolution).

    ``forward(x, warps, guides=None)``: ``x`` lives in the domain after ``warps`` (e.g. the stride-32 prediction after
    all three, or a stride-16 map after ``warps[:2]``). For ``k`` from the last warp to the first, ``x`` is resampled
    onto the uniform grid of ``warps[k].size`` at ``phi_k`` of the pixel centres (the exact inverse of ARS ``k``)
    and refined by reassembly ``k``. The result is at ``warps[0].size`` (stride 4 for a 4-stage backbone) on the
    uniform grid; up-sample it to the image plainly.

    ``step(x, warps, k, guide=None)`` is one of those steps: it takes a map in the domain of ``warps[:k + 1]`` (pyramid
    level ``k + 1``) to the domain and size of level ``k``, e.g. for the top-down path of an FPN.
    """

    def __init__(
            self,
            chs: int,
            num_scales: int = 3,
            kernel_size: int = 3,
            guide_chs: Optional[Sequence[int]] = None,
            hidden_chs: int = 32,
    ):
        super().__init__()
        guide_chs = list(guide_chs) if guide_chs is not None else [0] * num_scales
        if len(guide_chs) != num_scales:
            raise ValueError(f'guide_chs needs one entry per scale ({num_scales}), got {guide_chs}')
        self.reassemble = nn.ModuleList([
            ContentReassembly(chs, kernel_size, g, hidden_chs) for g in guide_chs
        ])

    def forward(
            self,
            x: torch.Tensor,
            warps: Sequence[SeparableWarp],
            guides: Optional[Sequence[Optional[torch.Tensor]]] = None,
    ) -> torch.Tensor:
        if not 0 < len(warps) <= len(self.reassemble):
            raise ValueError(f'AdaptiveUpsampler walks 1..{len(self.reassemble)} warps, got {len(warps)}')
        for k in reversed(range(len(warps))):
            x = self.step(x, warps, k, guides[k] if guides is not None else None)
        return x

    def step(
            self,
            x: torch.Tensor,
            warps: Sequence[SeparableWarp],
            k: int,
            guide: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        warp = warps[k]
        x = demodulate(x, warp, warp.size)
        return self.reassemble[k](x, _log_magnification(warp, warp.size), guide)


def _log_magnification(warp: SeparableWarp, size: Tuple[int, int]) -> torch.Tensor:
    """log(phi_y' * phi_x') at the centres of a ``size`` grid, as (N, 1, h, w)."""
    ref = warp.cum_y
    my = warp.magnification(0, _centres(size[0], ref).expand(ref.shape[0], -1))
    mx = warp.magnification(1, _centres(size[1], ref).expand(ref.shape[0], -1))
    return (my.log()[:, None, :, None] + mx.log()[:, None, None, :])


def record_warps(
        resamplers: Sequence[AdaptiveResampler],
        fn: Callable[..., Any],
        *args: Any,
) -> Tuple[Any, List[Optional[SeparableWarp]]]:
    """Call ``fn(*args)`` with the (hooked) ``resamplers`` recording; return its output and this call's warps.

    The warps come in the order of ``resamplers``, None for a resampler whose transition did not run. Recording is
    switched off again afterwards, even on an error, so the modules do not keep this call's graph alive.
    """
    for r in resamplers:
        r.recording, r.last_warp = True, None
    try:
        out = fn(*args)
        warps = [r.last_warp for r in resamplers]
    finally:
        for r in resamplers:
            r.recording, r.last_warp = False, None
    return out, warps


# timm layouts whose stage transitions we can find: `stages.N.downsample` (pvt_v2, convnext, ...) and
# `layers.N.downsample` (focalnet, ...), also flattened by FeatureListNet (`stages_N`) and under a getter's `model.`
_TIMM_TRANSITION = re.compile(r'^(?:model\.)?(?:stages|layers)[._](\d+)\.downsample$')


def _features_inner(model: nn.Module) -> Tuple[nn.Module, str]:
    """(model that owns the layers, prefix of its names in ``model``): unwraps timm's FeatureGetterNet."""
    inner = getattr(model, 'model', None)
    if isinstance(inner, nn.Module) and hasattr(model, 'out_indices') and hasattr(inner, 'forward_intermediates'):
        return inner, 'model.'
    return model, ''


def find_stage_transitions(model: nn.Module) -> List[str]:
    """Names (in ``model``) of the stride-2 stage-transition modules that take NCHW input, shallowest first.

    Uses the modzoo contract ``stage_transitions()`` when the model (or the model inside a timm ``features_only``
    getter) has it; otherwise finds timm's ``stages.N.downsample`` / ``layers.N.downsample`` modules (also in
    ``features_only`` wrappers) that contain a stride-2 ``Conv2d``. Raises :class:`SFMError` otherwise.
    """
    inner, prefix = _features_inner(model)
    if hasattr(inner, 'stage_transitions'):
        names = [prefix + n for n in inner.stage_transitions()]
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise SFMError(f'{type(inner).__name__}.stage_transitions() names modules that do not exist: {missing}')
        if not names:
            raise SFMError(f'{type(inner).__name__}.stage_transitions() is empty: nothing to resample')
        return names

    found, rejected = [], []
    for name, module in model.named_modules():
        match = _TIMM_TRANSITION.match(name)
        if match is None or isinstance(module, nn.Identity):
            continue
        if _has_stride2_conv(module):
            found.append((int(match.group(1)), name))
        else:
            rejected.append(f'{name} ({type(module).__name__})')
    if rejected:
        raise SFMError(
            f'{type(inner).__name__}: the downsampling modules {rejected} have no stride-2 Conv2d; they are likely '
            f'channels-last patch-merging layers (e.g. Swin), which ARS cannot precede. Pass transitions= explicitly '
            f'if they do take NCHW input.')
    if not found:
        raise SFMError(
            f'Cannot find the stage transitions of {type(inner).__name__}: it has no stage_transitions() method and '
            f'no timm-style stages.N.downsample / layers.N.downsample modules. Pass transitions=[module names] '
            f'(modules whose first input is NCHW) explicitly.')
    return [name for _, name in sorted(found)]


def _has_stride2_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2) for m in module.modules())


def _input_channels(module: nn.Module, name: str) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    raise SFMError(f'Cannot infer the input channels of {name} ({type(module).__name__}: no Conv2d); pass in_chs=')


class SFM(nn.Module):
    """Adaptive resampling (ARS) in front of every stride-2 stage transition of a backbone.

    Args:
        backbone: a 4-stage model from ``timm.create_model(name)`` (classification model) or from
            ``timm.create_model(name, features_only=True)`` (getter, list or dict wrapper). Wrap *after* timm has built
            it: timm loads pretrained weights before applying its features wrapper, and ARS starts as the identity, so
            the wrapped model gives the same outputs as the pretrained one.
        transitions: module names to resample in front of (default: :func:`find_stage_transitions`).
        in_chs: their input channels (default: the ``in_channels`` of each module's first ``Conv2d``).
        min_density: see :class:`AdaptiveResampler`.
        resampler_layer: the resampler class (an :class:`AdaptiveResampler` subclass, e.g. with another saliency).

    ``forward(x, return_warps=False)`` runs the backbone unchanged otherwise (returns its output, e.g. logits or the
    feature list) and, with ``return_warps``, also the list of :class:`SeparableWarp` of this call, shallowest first,
    for :class:`AdaptiveUpsampler` / :func:`demodulate`. The hooks live on the backbone's modules, so calling
    ``sfm.backbone`` directly also resamples (without recording); :meth:`remove` detaches them.
    """

    def __init__(
            self,
            backbone: nn.Module,
            transitions: Optional[Sequence[str]] = None,
            in_chs: Optional[Sequence[int]] = None,
            min_density: float = 0.125,
            resampler_layer: type = AdaptiveResampler,
    ):
        super().__init__()
        self.backbone = backbone
        names = list(transitions) if transitions is not None else find_stage_transitions(backbone)
        if in_chs is not None and len(in_chs) != len(names):
            raise ValueError(f'in_chs needs one entry per transition {names}, got {list(in_chs)}')
        modules = dict(backbone.named_modules())
        unknown = [n for n in names if n not in modules]
        if unknown:
            raise SFMError(f'No module named {unknown} in {type(backbone).__name__}')
        self.transitions = names
        self.resamplers = nn.ModuleList()
        self._handles = []
        for i, name in enumerate(names):
            chs = in_chs[i] if in_chs is not None else _input_channels(modules[name], name)
            resampler = resampler_layer(chs, min_density)
            self.resamplers.append(resampler)
            self._handles.append(modules[name].register_forward_pre_hook(resampler._pre_hook))
        if hasattr(backbone, 'feature_info'):
            self.feature_info = backbone.feature_info

    def forward(self, x: torch.Tensor, return_warps: bool = False):
        out, warps = record_warps(self.resamplers, self.backbone, x)
        if return_warps:
            if any(w is None for w in warps):
                skipped = [n for n, w in zip(self.transitions, warps, strict=True) if w is None]
                raise RuntimeError(f'SFM: the transitions {skipped} did not run in this forward (pruned model?)')
            return out, warps
        return out

    def remove(self) -> nn.Module:
        """Detach the resamplers from the backbone and return it (as it was before wrapping)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return self.backbone

    def extra_repr(self) -> str:
        return 'transitions=' + ', '.join(self.transitions)
