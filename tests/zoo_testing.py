"""Helpers shared by the per-family test modules (golden fixtures, official key layouts, cheap model builds)."""
import contextlib
import json
import os
from typing import Callable, Dict, Tuple

import timm
import torch
from safetensors.torch import load_file

import modzoo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')
GOLDEN_DIR = os.path.join(FIXTURES, 'golden')
KEYS_DIR = os.path.join(FIXTURES, 'keys')
# above this many parameters a model counts as large: tests build it with fast_init and skip repeated builds
LARGE_PARAMS = 120e6


def reported_and_manifest(family: str) -> Tuple[dict, dict]:
    """A family's paper-reported numbers (``modzoo/data/reported/<family>.json``, by model name) and checkpoint
    manifest (``modzoo/data/manifest/<family>.json``, by ``model.tag``)."""
    from modzoo.utils.reported import load_reported_files
    reported = load_reported_files()[family]['models']
    with open(os.path.join(REPO, 'modzoo', 'data', 'manifest', family + '.json')) as f:
        manifest = json.load(f)['checkpoints']
    return reported, manifest


def golden_names(prefix: str):
    """Names of the golden fixtures (``<name>.safetensors`` + ``<name>.json``) starting with ``prefix``."""
    return sorted(f[:-len('.json')] for f in os.listdir(GOLDEN_DIR) if f.startswith(prefix) and f.endswith('.json'))


def load_golden(name: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], dict]:
    """Returns (official-layout state_dict, other tensors such as ``input``/``logits``, metadata)."""
    tensors = load_file(os.path.join(GOLDEN_DIR, name + '.safetensors'))
    with open(os.path.join(GOLDEN_DIR, name + '.json')) as f:
        meta = json.load(f)
    prefix = 'state_dict.'
    state_dict = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    others = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    return state_dict, others, meta


def create_from_file(model_name: str, checkpoint: dict, tmp_path, checkpoint_classes: int = None, **kwargs):
    """Load ``checkpoint`` (any container) through the public timm API: pretrained=True + a file overlay.

    ``checkpoint_classes`` tells timm the checkpoint's head size when it is not the registered cfg's.
    """
    path = os.path.join(str(tmp_path), 'checkpoint.pth')
    torch.save(checkpoint, path)
    overlay = dict(file=path)
    if checkpoint_classes is not None:
        overlay['num_classes'] = checkpoint_classes
    return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)


def check_golden_logits(
        model_name: str,
        golden: str,
        tmp_path,
        wrap: Callable[[dict], dict] = lambda state_dict: {'model': state_dict},
        model_kwargs: Callable[[dict], dict] = dict,
) -> None:
    """Official-layout golden weights, wrapped in a checkpoint container by ``wrap``, through the public timm API
    (:func:`create_from_file`) reproduce the official code's logits (<= 1e-5) with its parameter count.

    ``model_kwargs`` maps the fixture's official constructor kwargs to the model's.
    """
    state_dict, tensors, meta = load_golden(golden)
    kwargs = model_kwargs(meta['official_kwargs'])
    model = create_from_file(
        model_name, wrap(state_dict), tmp_path, checkpoint_classes=kwargs['num_classes'], **kwargs).eval()
    with torch.no_grad():
        logits = model(tensors['input'])
    # not a test module, so pytest does not rewrite these asserts: the messages say what differed
    assert logits.shape == tuple(meta['logits_shape']), f'{golden}: logits shape {tuple(logits.shape)}'
    max_diff = (logits - tensors['logits']).abs().max().item()
    assert max_diff <= 1e-5, f'{golden}: max |logits - official| = {max_diff:.3g}'
    params = num_params(model)
    assert params == meta['num_params'], f'{golden}: {params} params, official {meta["num_params"]}'


def check_loads_identically(model_name: str, source: torch.nn.Module, checkpoint, **kwargs) -> None:
    """``checkpoint`` (any container) loaded with :func:`modzoo.load_checkpoint` into a new ``model_name`` gives
    exactly the outputs of ``source`` (an eval-mode model) on a 64x64 image."""
    target = timm.create_model(model_name, **kwargs).eval()
    modzoo.load_checkpoint(target, checkpoint)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, expected = target(x), source(x)
    assert torch.equal(out, expected), f'{model_name}: max |loaded - source| = {(out - expected).abs().max():.3g}'


def layout_names(prefix: str):
    """Official full-size key layouts (``fixtures/keys/<prefix>*.json``)."""
    return sorted(f[:-len('.json')] for f in os.listdir(KEYS_DIR) if f.startswith(prefix) and f.endswith('.json'))


def random_checkpoint(layout: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A checkpoint with exactly the keys and shapes of an official layout, filled with random values."""
    with open(os.path.join(KEYS_DIR, layout + '.json')) as f:
        shapes = json.load(f)
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) if shape else torch.randn((), generator=gen)
            for k, shape in shapes.items()}


def build_on_meta(model_name: str, **kwargs) -> torch.nn.Module:
    """Build a model without allocating or initialising weights (shapes and structure only)."""
    with torch.device('meta'):
        return timm.create_model(model_name, pretrained=False, **kwargs)


def load_assign(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor]) -> torch.nn.Module:
    """Strictly load into a (possibly meta) model by assigning the checkpoint tensors (no copy, no init cost)."""
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_POOL_SIZE = 1 << 20


@contextlib.contextmanager
def fast_init():
    """Make ``Tensor.uniform_``/``normal_`` tile a precomputed random pool instead of drawing every element.

    Initialising a 700M-parameter model draws 700M random numbers on one thread (~12 s); tests of the biggest
    variants only need weights with the right distribution, not independent ones. timm's ``trunc_normal_`` and
    PyTorch's default inits are built on these two methods, so the patched build keeps their distributions.
    """
    gen = torch.Generator().manual_seed(0)
    uniform_pool = torch.rand(_POOL_SIZE, generator=gen)
    normal_pool = torch.randn(_POOL_SIZE, generator=gen)
    orig_uniform, orig_normal = torch.Tensor.uniform_, torch.Tensor.normal_

    def _fill(t, pool, scale, shift):
        if t.numel() == 0 or t.device.type == 'meta':
            return t
        with torch.no_grad():
            flat = t.view(-1) if t.is_contiguous() else torch.empty(t.numel(), dtype=t.dtype)
            for start in range(0, flat.numel(), _POOL_SIZE):
                chunk = flat[start:start + _POOL_SIZE]
                chunk.copy_(pool[:chunk.numel()])
            flat.mul_(scale).add_(shift)
            if not t.is_contiguous():
                t.copy_(flat.view(t.shape))
        return t

    def uniform_(self, a=0., b=1., *, generator=None):
        return _fill(self, uniform_pool, b - a, a)

    def normal_(self, mean=0., std=1., *, generator=None):
        return _fill(self, normal_pool, std, mean)

    torch.Tensor.uniform_, torch.Tensor.normal_ = uniform_, normal_
    try:
        yield
    finally:
        torch.Tensor.uniform_, torch.Tensor.normal_ = orig_uniform, orig_normal


def is_large(model_name: str, **kwargs) -> bool:
    """More than ``LARGE_PARAMS`` parameters (counted on a meta build)."""
    return num_params(build_on_meta(model_name, **kwargs)) > LARGE_PARAMS


def create_for_test(model_name: str, **kwargs) -> torch.nn.Module:
    """``timm.create_model(pretrained=False)``, with :func:`fast_init` for the biggest variants."""
    if is_large(model_name, **kwargs):
        with fast_init():
            return timm.create_model(model_name, pretrained=False, **kwargs)
    return timm.create_model(model_name, pretrained=False, **kwargs)


def fitted(checkpoint, model: torch.nn.Module, **kwargs) -> Dict[str, torch.Tensor]:
    """The tensors of ``checkpoint`` that fit ``model`` through the checkpoint contract (read, family filter,
    matcher; strict unless ``strict=False``), with the layers no checkpoint can have at the model's values."""
    report = modzoo.models.fit_checkpoint(checkpoint, model, **kwargs)
    model_sd = model.state_dict()
    return dict({k: model_sd[k] for k in report.missing}, **report.state_dict)
