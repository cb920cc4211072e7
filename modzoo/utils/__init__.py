"""Utilities shared across modzoo families and tools (FLOP counting)."""
from .flops import FLOP_HANDLES, count_flops, sdpa_flop_jit

__all__ = ['FLOP_HANDLES', 'count_flops', 'sdpa_flop_jit']
