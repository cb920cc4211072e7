"""Which GPU a tensor is on, as the validated-kernel table and the GPU check name it, and that card's peak rates.

A *GPU family* is the compute capability plus a card class read from the device name as whole words, so that
``NVIDIA GH200 480GB`` is ``sm90 GH200`` and never ``H200``, and the SXM, PCIe and NVL boards of one chip (which
differ in clocks and memory) are told apart: ``sm90 H100 SXM``, ``sm90 H100 PCIe``, ``sm90 H200 SXM``.
"""
import re
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ['CardPeak', 'PEAKS', 'card_class', 'gpu_family', 'family_of_device', 'card_peak']


def _words(name: str) -> Tuple[str, ...]:
    return tuple(w for w in re.split(r'[\s\-_/]+', name.upper()) if w)


def card_class(name: str) -> str:
    """The card class of a CUDA device name (``torch.cuda.get_device_name``), e.g. ``'H100 SXM'``.

    Unknown cards keep their name without the vendor prefix, so they still get a stable, exact key.
    """
    words = _words(name)
    if 'GH200' in words:
        return 'GH200'
    for chip in ('H200', 'H100', 'A100'):
        if chip in words:
            if 'NVL' in words:
                return f'{chip} NVL'
            if 'PCIE' in words:
                return f'{chip} PCIe'
            return f'{chip} SXM'  # the SXM boards' names carry no board word ("NVIDIA H100 80GB HBM3")
    rest = [w for w in name.split() if w.upper() != 'NVIDIA']
    return ' '.join(rest) or name.strip()


def gpu_family(capability: Tuple[int, int], name: str) -> str:
    """``'sm<major><minor> <card class>'``, the key of the validated-kernel table."""
    return f'sm{capability[0]}{capability[1]} {card_class(name)}'


def family_of_device(device) -> str:
    """The GPU family of a CUDA ``torch.device`` (or index)."""
    import torch
    return gpu_family(torch.cuda.get_device_capability(device), torch.cuda.get_device_name(device))


@dataclass(frozen=True)
class CardPeak:
    bandwidth_gbs: float    # DRAM bandwidth, GB/s (datasheet)
    fp32_tflops: float      # non-tensor-core FP32 rate, TFLOP/s (2 FLOPs per FMA)


# Datasheet peaks. Depthwise convolutions run on the CUDA cores, not the tensor cores, and accumulate in fp32, so
# the compute roof is the FP32 FMA rate for every activation dtype.
PEAKS = {
    'H100 SXM': CardPeak(3350, 66.9),
    'H100 PCIe': CardPeak(2000, 51.2),
    'H100 NVL': CardPeak(3900, 60.0),
    'H200 SXM': CardPeak(4800, 66.9),
    'H200 NVL': CardPeak(4800, 60.0),
    'GH200': CardPeak(4000, 66.9),       # 96 GB HBM3 board; the 144 GB HBM3e board: see card_peak
    'A100 SXM': CardPeak(2039, 19.5),
    'A100 PCIe': CardPeak(1935, 19.5),
}


def card_peak(name: str) -> Optional[CardPeak]:
    """Peak rates of the card called ``name``; None for a card not in :data:`PEAKS`."""
    cls = card_class(name)
    if cls == 'GH200' and 'HBM3E' in _words(name):
        return CardPeak(4900, 66.9)
    return PEAKS.get(cls)
