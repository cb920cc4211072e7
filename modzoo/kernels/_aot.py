"""Ahead-of-time compile check: build every modzoo Triton kernel for a CUDA target without a GPU.

The interpreter runs the kernels' Python, which is more permissive than the compiler (types, constexpr scoping,
register pressure). This compiles each kernel with the tile configurations the GPU launchers pick, down to a cubin,
and reports registers and spills, so a CPU-only machine still proves the kernels build for the card.

    python -m modzoo.kernels._aot [--arch 90] [--dtype float32 bfloat16] [--quick]

Must run with ``TRITON_INTERPRET`` unset (an interpreted kernel cannot be compiled); exits 1 on any failure.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Tuple

_TL_DTYPES = {'float32': 'fp32', 'float16': 'fp16', 'bfloat16': 'bf16'}
_FP32_POINTERS = {
    'w_ptr', 'wn_ptr', 'b_ptr', 'w0', 'w1', 'w2', 'w3', 'b0', 'b1', 'b2', 'b3', 'part_ptr', 'mean_ptr', 'dmean_ptr',
    'dgates_ptr', 'dwp_ptr', 'dbp_ptr', 'dwp0', 'dwp1', 'dwp2', 'dwp3', 'dbp0', 'dbp1', 'dbp2', 'dbp3',
}
_FLOAT_SCALARS = {'scale'}


def _is_pointer(name: str) -> bool:
    return name.endswith('_ptr') or name in _FP32_POINTERS


def _signature(fn, constexprs: Dict[str, object], dtype: str) -> Dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in constexprs:
            sig[name] = 'constexpr'
        elif _is_pointer(name):
            sig[name] = '*fp32' if name in _FP32_POINTERS else '*' + dtype
        elif name in _FLOAT_SCALARS:
            sig[name] = 'fp32'
        else:
            sig[name] = 'i32'
    return sig


def _unit_strides(prefixes: List[str], channels_last: bool) -> Dict[str, int]:
    # Triton specialises an integer argument equal to 1 into a constant; mirror that for the innermost stride
    return {f'{p}_{"c" if channels_last else "w"}': 1 for p in prefixes}


def _tile(channels_last: bool, C: int, H: int, elems: int = 1024) -> Tuple[Dict[str, int], int]:
    """The tile constexprs and ``num_warps`` the launchers pick (``TilePlan``) for a (C, H, H) plane."""
    from ._triton_utils import conv_tile_config
    bc, th, tw, num_warps = conv_tile_config(channels_last, C, H, H, elems)
    return dict(BLOCK_C=bc, TH=th, TW=tw), num_warps


def kernel_specs(quick: bool = False) -> Iterator[Tuple[str, object, Dict[str, object], int]]:
    """``(label, kernel, constexprs, num_warps)`` for the configurations the launchers use on the model shapes.

    ``quick``: every kernel and every constexpr branch once, with small taps and NCHW tiles only (seconds).
    """
    from . import _dwconv_triton as dw, _focal_triton as fo, _smt_triton as smt, _tile_mul_triton as tm
    from ._layout import next_pow2

    layouts = (False,) if quick else (False, True)
    planes = ((96, 56),) if quick else ((96, 56), (768, 7))
    for cl in layouts:
        layout = 'nhwc' if cl else 'nchw'
        for C, H in planes:
            tile, nw = _tile(cl, C, H)
            tile_b, nw_b = _tile(cl, C, H, elems=512)
            for K in ((3,) if quick else (3, 7)):
                yield (f'dwconv_act_fwd K{K} C{C} {layout}', dw._dwconv_act_fwd_kernel,
                       dict(K=K, HAS_BIAS=True, APPLY_GELU=True, FLIP=False, **tile,
                            **_unit_strides(['sx', 'sy'], cl)), nw)
                yield (f'dwconv_gelu_bwd K{K} C{C} {layout}', dw._dwconv_gelu_bwd_kernel,
                       dict(K=K, KK=next_pow2(K * K), HAS_BIAS=True, **tile_b,
                            **_unit_strides(['sx', 'sd', 'sz'], cl)), nw_b)
            yield (f'dwconv_act_fwd K3 flip C{C} {layout}', dw._dwconv_act_fwd_kernel,
                   dict(K=3, HAS_BIAS=False, APPLY_GELU=False, FLIP=True, **tile,
                        **_unit_strides(['sx', 'sy'], cl)), nw)
            for K, mode, extra in ((3, 0, dict(WRITE_P=True, HAS_PIN=True, HAS_PREV=True)),
                                   (3 if quick else 5, 1, dict(WRITE_P=False, HAS_PIN=False, HAS_PREV=False)),
                                   (3 if quick else 5, 2, dict(WRITE_P=False, HAS_PIN=True, HAS_PREV=True))):
                yield (f'focal_fwd mode{mode} K{K} C{C} {layout}', fo._focal_fwd_kernel,
                       dict(K=K, MODE=mode, **extra, **tile, **_unit_strides(['ss', 'sb'], cl)), nw)
            yield (f'focal_bwd_global C{C} {layout}', fo._focal_bwd_global_kernel,
                   dict(**tile, **_unit_strides(['sd'], cl)), nw)
            levels = ((3, 1, True), (3, 3, False)) if quick else ((5, 1, True), (3, 5, False), (7, 9, False))
            for K, KN, last in levels:
                yield (f'focal_bwd_level K{K}/{KN} C{C} {layout}', fo._focal_bwd_level_kernel,
                       dict(K=K, KN=KN, KK=next_pow2(K * K), IS_LAST=last, **tile_b,
                            **_unit_strides(['ss', 'sd', 'sz'], cl)), nw_b)
        for Cg, H in (((16, 56),) if quick else ((16, 56), (64, 14))):
            tile, nw = _tile(cl, Cg, H)
            tile_b, nw_b = _tile(cl, Cg, H, elems=256)
            if quick:  # every head branch, smallest taps
                ks, kks = dict(NUM_HEADS=4, K0=3, K1=1, K2=3, K3=1), dict(KK0=16, KK1=1, KK2=16, KK3=1)
            else:
                ks, kks = dict(NUM_HEADS=4, K0=3, K1=5, K2=7, K3=9), dict(KK0=16, KK1=32, KK2=64, KK3=128)
            yield (f'mixed_dw_fwd Cg{Cg} {layout}', smt._mixed_dw_fwd_kernel,
                   dict(**ks, **tile, **_unit_strides(['sx', 'sy'], cl)), nw)
            yield (f'mixed_dw_bwd Cg{Cg} {layout}', smt._mixed_dw_bwd_kernel,
                   dict(**ks, **kks, **tile_b, **_unit_strides(['sx', 'sd', 'se'], cl)), nw_b)
    for C in ((32,) if quick else (32, 312)):
        bm, bc, nw = tm._config(128 * 56 * 56, C)
        for gelu in ((True,) if quick else (True, False)):
            yield (f'tile_mul_fwd C{C} gelu={gelu}', tm._tile_mul_fwd_kernel,
                   dict(APPLY_GELU=gelu, BLOCK_M=bm, BLOCK_C=bc, sv_k=1, sc_k=1), nw)
            yield (f'tile_mul_bwd C{C} gelu={gelu}', tm._tile_mul_bwd_kernel,
                   dict(APPLY_GELU=gelu, BLOCK_M=bm, BLOCK_C=bc, sv_k=1, sc_k=1, sd_k=1), nw)


def _resource_usage(cubin: bytes) -> Dict[str, int]:
    """Registers / stack / local memory per thread from ``cuobjdump --dump-resource-usage``."""
    import triton
    tool = os.path.join(os.path.dirname(triton.__file__), 'backends', 'nvidia', 'bin', 'cuobjdump')
    with tempfile.NamedTemporaryFile(suffix='.cubin') as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, '--dump-resource-usage', f.name], capture_output=True, text=True).stdout
    usage = {}
    for key in ('REG', 'STACK', 'SHARED', 'LOCAL'):
        m = re.search(rf'\b{key}:(\d+)', text)
        usage[key.lower()] = int(m.group(1)) if m else -1
    return usage


def compile_all(arch: int = 90, dtypes=('float32', 'bfloat16'), quick: bool = False, verbose: bool = True
                ) -> List[dict]:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from . import _triton_utils
    if _triton_utils.INTERPRETED:
        raise RuntimeError('the AOT check needs TRITON_INTERPRET unset (interpreted kernels cannot be compiled)')
    target = GPUTarget('cuda', arch, 32)
    results = []
    for label, fn, constexprs, num_warps in kernel_specs(quick):
        for dtype in dtypes:
            row = dict(kernel=label, dtype=dtype)
            start = time.perf_counter()
            try:
                src = ASTSource(fn=fn, signature=_signature(fn, constexprs, _TL_DTYPES[dtype]), constexprs=constexprs)
                compiled = triton.compile(src, target=target, options=dict(num_warps=num_warps))
                row.update(ok=True, **_resource_usage(compiled.asm['cubin']))
            except Exception as e:  # report every failure, not just the first
                row.update(ok=False, error=f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else e}')
            row['seconds'] = round(time.perf_counter() - start, 2)
            results.append(row)
            if verbose:
                if row['ok']:
                    print(f"ok   {label:<42} {dtype:<9} regs {row['reg']:>3}  local {row['local']:>4}  "
                          f"stack {row['stack']:>4}  {row['seconds']:.1f}s", flush=True)
                else:
                    print(f"FAIL {label:<42} {dtype:<9} {row['error']}", flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', type=int, default=90, help='CUDA compute capability x10 (90 = H100/H200)')
    parser.add_argument('--dtype', nargs='+', default=None, choices=sorted(_TL_DTYPES),
                        help='default: float32 and bfloat16 (bfloat16 only with --quick)')
    parser.add_argument('--quick', action='store_true', help='every kernel and branch once with small taps')
    args = parser.parse_args(argv)
    dtypes = args.dtype or (['bfloat16'] if args.quick else ['float32', 'bfloat16'])
    results = compile_all(args.arch, dtypes, quick=args.quick)
    failed = [r for r in results if not r['ok']]
    spilled = [r for r in results if r['ok'] and (r['local'] > 0 or r['stack'] > 0)]
    print(f'{len(results) - len(failed)}/{len(results)} kernels compiled for sm_{args.arch}; '
          f'{len(spilled)} with local memory / stack use (register spills)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
