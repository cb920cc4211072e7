"""Input validation and padding used at the entry of every modzoo backbone."""
import torch
import torch.nn.functional as F


def check_image_input(x: torch.Tensor, in_chans: int, model_name: str = 'model') -> None:
    """Raise a ValueError that names the problem when ``x`` is not an ``(N, in_chans, H, W)`` batch.

    Skipped while tracing for export: the exported graph has a fixed channel count anyway.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    if x.dim() != 4:
        raise ValueError(
            model_name + ' expects a 4-D image batch (N, C, H, W), got a tensor of shape ' + str(list(x.shape)))
    if x.shape[1] != in_chans:
        raise ValueError(
            model_name + ' was built for ' + str(in_chans) + '-channel input but got ' + str(x.shape[1])
            + ' channels (input shape ' + str(list(x.shape)) + '). Build it with in_chans='
            + str(x.shape[1]) + ' or convert the input.')


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad the bottom/right edges of an NCHW tensor so H and W are multiples of ``multiple``.

    Used before non-overlapping patch convolutions, which would otherwise silently drop the last rows/cols.
    The pad is applied unconditionally (a zero pad is a cheap copy) so traced and exported graphs stay
    correct for every input size instead of baking in the branch taken at trace time.
    """
    h, w = x.shape[-2], x.shape[-1]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h))
