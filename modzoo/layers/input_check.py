"""Input validation and padding used at the entry of every modzoo backbone."""
import torch
import torch.nn.functional as F

from modzoo.utils.tracing import is_tracing


def check_image_input(x: torch.Tensor, in_chans: int, model_name: str = 'model') -> None:
    """Raise a ValueError that names the problem when ``x`` is not an ``(N, in_chans, H, W)`` batch.

    Skipped while tracing (jit, ONNX, FX): FX proxies have no size to check, and a traced graph has a fixed channel
    count anyway. torch.export and torch.compile run it on fake tensors (it becomes a guard).
    """
    if is_tracing():
        return
    if x.dim() != 4:
        raise ValueError(
            model_name + ' expects a 4-D image batch (N, C, H, W), got a tensor of shape ' + str(list(x.shape)))
    if x.shape[1] != in_chans:
        raise ValueError(
            model_name + ' was built for ' + str(in_chans) + '-channel input but got ' + str(x.shape[1])
            + ' channels (input shape ' + str(list(x.shape)) + '). Build it with in_chans='
            + str(x.shape[1]) + ' or convert the input.')


def pad_for_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Zero-pad the bottom/right edges of an NCHW tensor so a non-overlapping ``patch x patch`` conv (stride = kernel
    = ``patch``) covers every pixel, giving ``ceil(H / patch)`` rows instead of silently dropping the remainder.

    ``patch - 1`` zero rows/cols cover any remainder and the strided conv never reads past its last window, so the
    result is identical to padding to a multiple of ``patch``. The pad is constant (not remainder-dependent): traced
    and exported graphs stay correct for every input size, and dynamic-shape export keeps simple shape formulas
    (a remainder-dependent pad makes ``torch.export`` of PVT v1 much slower).
    """
    return F.pad(x, (0, patch - 1, 0, patch - 1))


def pad_to_min_size(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the bottom/right edges of an NCHW tensor smaller than ``size`` in height or width up to ``size``, so
    a ``size x size`` strided conv (PVT's spatial reduction) gives one cell instead of failing; larger inputs pass
    unchanged (the conv keeps its official floor behaviour). Models call it through ``torch.fx.wrap``: FX records
    the call, and the padding is decided from the real size when the graph runs."""
    pad_h = max(size - x.shape[-2], 0)
    pad_w = max(size - x.shape[-1], 0)
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    return x
