"""Deterministic seeding keyed on the training position, and RNG state capture for checkpoints.

Exact resume needs every random draw to be reproducible from where training stopped. Rather than replaying the
generators' history, the trainer reseeds them from ``(seed, epoch, sample index)`` before each sample's augmentation
and from ``(seed, rank, epoch, batch)`` before each step (drop path, mixup). A run resumed at any step therefore draws
exactly what the uninterrupted run drew, with any number of data-loader workers. The generators' raw states are
saved in checkpoints too (:func:`capture_rng_state`), so code outside those reseeding points also continues exactly.
"""
import hashlib
import random
from typing import Any, Dict

import numpy as np
import torch

__all__ = ['derive_seed', 'seed_all', 'capture_rng_state', 'restore_rng_state']


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers (stable across processes and Python versions)."""
    digest = hashlib.blake2b(','.join(str(int(k)) for k in keys).encode(), digest_size=8).digest()
    return int.from_bytes(digest, 'little') >> 1


def seed_all(seed: int, cuda: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch's CPU (and optionally CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.random.default_generator.manual_seed(seed)
    if cuda and torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def capture_rng_state() -> Dict[str, Any]:
    """The global generators' states, as tensors/lists/ints so the checkpoint loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, py_state, gauss = random.getstate()
    state = {
        'python': [version, list(py_state), gauss],
        'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    version, py_state, gauss = state['python']
    random.setstate((version, tuple(py_state), gauss))
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda']
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
