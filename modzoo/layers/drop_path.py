"""Stochastic-depth schedules."""
from typing import List, Sequence


def drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> List[List[float]]:
    """Per-stage drop-path rates rising linearly from 0 to ``drop_path_rate`` over all blocks.

    Not timm's ``calculate_drop_path_rates``: that rounds the rates through a float32 ``linspace``; these float64
    rates are the ones modzoo models have always been built with (DropPath's rescaling depends on them).
    """
    total = sum(depths)
    rates = [drop_path_rate * i / (total - 1) if total > 1 else 0. for i in range(total)]
    out, start = [], 0
    for depth in depths:
        out.append(rates[start:start + depth])
        start += depth
    return out
