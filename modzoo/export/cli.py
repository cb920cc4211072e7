"""Export a modzoo model to ONNX and (with ``--check``) prove the graph right in ONNX Runtime.

    python tools/export_onnx.py zoo_smt_small --dynamic batch --check
    python tools/export_onnx.py zoo_focalnet_tiny_srf --checkpoint focalnet_tiny_srf.pth --dynamic batch,spatial \\
        --check --output focalnet_t.onnx
    python tools/export_onnx.py zoo_smt_tiny --no-deploy --no-simplify     # the graph exactly as torch.onnx writes it
    python tools/export_onnx.py zoo_efficientmod_s --features --img-size 512 512 --check   # stage outputs feat0..3
    python tools/export_onnx.py configs/focalnet/upernet_focalnet-t-srf_8xb2-160k_ade20k-512x512.py --check
    python tools/export_onnx.py zoo_gridpe_pvt_v2_b2 --head macmd --num-classes 9 --check      # PVT v2 b2 + MACMD
    python tools/export_onnx.py zoo_efficientmod_s --checkpoint m.pth --int8 --calib-data imagenet/val --check

By default the graph is the leanest correct one: BatchNorm folded and the modules' export forms applied
(``modzoo.export.deploy.prepare_for_export``), then simplified by onnxslim (constant folding: at a fixed input size
GridPE's rotation tables become constants); ``--no-deploy`` / ``--no-simplify`` turn these off.
Classification models export one output ``logits``; ``--features`` exports the ``features_only`` backbone with every
stage output as a named graph output (``feat0``, ``feat1``, ...; strides and channels in the model metadata).
Segmentation: an MMSegmentation config (``.py``, needs the ``mm`` extras) or ``--head macmd`` exports the whole
segmentor as one graph ``image -> seg_logits`` (N, classes, H, W), without training-only auxiliary heads.
``--check`` runs ONNX Runtime (CPU execution provider) on random and photographic inputs at batches 1 and 3 (dynamic
batch) and at the export size plus two more (dynamic size), compares with PyTorch and prints the max abs difference
(fp32 tolerance 1e-4). Nothing is written unless the export and every check succeed; weights over ~1.8 GB go to
``<output>.data`` beside the graph. ``--int8`` also writes a static int8 graph (QDQ, per-channel weights,
calibrated on ``--calib-data``) and, with ``--check``, its top-1 agreement and logit error against fp32 on held-out
images (and both accuracies when the folder's classes are the model's). ``--runtime openvino`` writes the graph for
OpenVINO (its export forms: ``prepare_for_export(model, 'openvino')``) and runs the checks in OpenVINO's CPU plugin
(the ``openvino`` extra); ``both`` checks ONNX Runtime's graph in both runtimes. With ``--int8`` either also writes
``<output>-int8-openvino.xml`` (+ ``.bin``), OpenVINO IR quantized by NNCF from the same calibration images.
``--format executorch`` writes an ExecuTorch program (``.pte``, XNNPACK delegate; ``--int8`` also an int8 one) and
``--format coreml`` a Core ML package (``.mlpackage``, ``--fp16`` for half precision); both need the ``mobile``
extra, check themselves and write one parity report per run (:mod:`modzoo.export.mobile`).
Exit status: 0 success, 1 export or parity failure, 2 bad input.
"""
import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import timm
import torch

from modzoo.export import onnx as zoo_onnx
from modzoo.export import openvino as zoo_ov
from modzoo.export import quantize as zoo_quant
from modzoo.export import executorch as zoo_et
from modzoo.export import mobile as zoo_mobile
from modzoo.export.deploy import prepare_for_export
from modzoo.runtimes import OPENVINO, RUNTIME_NAMES, RuntimeUnavailable, require_runtime, runtime_list
from modzoo.export.segmentation import build_macmd_for_export, build_mmseg_for_export
from modzoo.models import CheckpointMismatchError, UnknownModelError
from modzoo.models import suggest_model_names
from modzoo.utils.cli import (
    OneLineArgumentParser, UsageError, check_distinct_paths, check_output_file, model_kwargs_error, parse_model_kwargs,
)

__all__ = ['EXIT_OK', 'EXIT_FAILED', 'EXIT_BAD_INPUT', 'build_parser', 'main']

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        description='Export a modzoo model to ONNX (and check it in ONNX Runtime).',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('model', help='registered model name, e.g. zoo_focalnet_tiny_srf (modzoo.list_models()), or '
                                      'an MMSegmentation config file (.py) to export the whole segmentor')
    parser.add_argument('--head', choices=('macmd',), default=None,
                        help='export MODEL as the encoder of a segmenter with this decoder (plain PyTorch MACMD)')
    parser.add_argument('--format', choices=zoo_mobile.FORMATS, default='onnx',
                        help='onnx (default; OpenVINO through --runtime), executorch (.pte, XNNPACK) or coreml '
                             '(.mlpackage); the phone formats need the mobile extra')
    parser.add_argument('--output', '-o', help='file to write (default: <model>[-features][-fp16].onnx, <model>.pte, '
                                               '<model>[-fp16].mlpackage)')
    parser.add_argument('--checkpoint', help='weights to load (any container; official or modzoo layout)')
    parser.add_argument('--trust-pickle', action='store_true',
                        help='allow a full unpickle of the checkpoint (only for files you trust)')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classifier size (default: the checkpoint\'s, else the registered one)')
    parser.add_argument('--img-size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help='export size (default: the model\'s pretrained input size)')
    parser.add_argument('--batch', type=int, default=1, help='example batch (the fixed batch with --dynamic none)')
    parser.add_argument('--dynamic', choices=zoo_onnx.DYNAMIC_MODES, default='batch', metavar='MODE',
                        help='symbolic input dimensions: none, batch (default) or batch,spatial')
    parser.add_argument('--opset', type=int, default=None,
                        help='ONNX opset (default: 17 with torchscript, 18 with dynamo)')
    parser.add_argument('--exporter', choices=zoo_onnx.EXPORTERS, default=zoo_onnx.DEFAULT_EXPORTER,
                        help=f'torch.onnx exporter (default: {zoo_onnx.DEFAULT_EXPORTER}; see README)')
    parser.add_argument('--features', action='store_true', help='export the features_only backbone (all stages)')
    parser.add_argument('--deploy', action=argparse.BooleanOptionalAction, default=zoo_onnx.DEFAULT_DEPLOY,
                        help='fold BatchNorm into convolutions, apply re-parameterisation hooks and the modules\' '
                             'ONNX export forms first (default: on; --no-deploy exports the model as built)')
    parser.add_argument('--fp16', action='store_true', help='float16 weights/activations (fp32 inputs/outputs)')
    parser.add_argument('--simplify', action=argparse.BooleanOptionalAction, default=zoo_onnx.DEFAULT_SIMPLIFY,
                        help='simplify the graph with onnxslim (default: on; --no-simplify keeps the exporter\'s '
                             'graph)')
    parser.add_argument('--external-data', choices=('auto', 'yes', 'no'), default='auto',
                        help='weights in <output>.data (auto: only above ~1.8 GB)')
    parser.add_argument('--check', action='store_true', help='compare the runtime with PyTorch and print the figure')
    parser.add_argument('--runtime', choices=('ort', 'openvino', 'both'), default='ort',
                        help='the runtime the graph is for: ONNX Runtime (default), OpenVINO (CPU plugin, the '
                             'openvino extra; the export forms OpenVINO runs fastest) or both (ONNX Runtime\'s graph); '
                             '--check runs there; with --int8 and openvino also an OpenVINO int8 IR quantized by NNCF')
    parser.add_argument('--model-kwargs', nargs='*', default=[], metavar='KEY=VALUE',
                        help='extra model constructor arguments, e.g. depths=(2,2,2,2)')
    parser.add_argument('--verbose', '-v', action='store_true', help='show exporter warnings and progress')
    int8 = parser.add_argument_group('int8', 'static int8 quantization (QDQ) of a classifier, beside the fp32 graph')
    int8.add_argument('--int8', action='store_true',
                      help='also write an int8 graph (<output>-int8.onnx); with --check, its agreement with fp32')
    int8.add_argument('--int8-output', help='int8 ONNX file (default: <output without .onnx>-int8.onnx)')
    int8.add_argument('--calib-data', metavar='DIR|digits',
                      help='calibration images: an ImageFolder (<dir>/<class>/<image>; its val/ split if it has one) '
                           f'or "{zoo_quant.DIGITS}" (scikit-learn\'s embedded handwritten digits, no download)')
    int8.add_argument('--calib-images', type=int, default=128, help='images that set the activation ranges')
    int8.add_argument('--check-images', type=int, default=256,
                      help='held-out images (never used for calibration) for the int8 vs fp32 check')
    int8.add_argument('--calib-method', choices=('minmax', 'entropy', 'percentile'), default='minmax',
                      help='activation range estimate (default minmax)')
    int8.add_argument('--int8-reduce-range', action='store_true',
                      help='7-bit weights: for CPUs without VNNI, where uint8 x int8 products can saturate')
    int8.add_argument('--int8-ops', choices=zoo_et.INT8_OPS,
                      help='--format executorch: the ops in int8, all XNNPACK supports (default) or the gemm layers '
                           '(fully-connected, full convolutions) only, depthwise convolutions and element-wise ops '
                           'left float32: faster where the CPU\'s int8 depthwise kernels are slower than float ones '
                           '(x86; check with tools/profile_pte.py)')
    return parser


def _fail(code: int, message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    return code


def _feature_metadata(model) -> Optional[List[Dict[str, Any]]]:
    info = getattr(model, 'feature_info', None)
    if info is None or not hasattr(info, 'channels'):
        return None
    return [dict(name=f'feat{i}', num_chs=c, reduction=r)
            for i, (c, r) in enumerate(zip(info.channels(), info.reduction(), strict=True))]


def _build(args, model_kwargs):
    """(model, output names, metadata) for a classifier, a features_only backbone or a segmentor."""
    if args.model.endswith('.py') or args.head:
        if args.features:
            raise ValueError('--features does not apply to a segmentation export')
        if args.model.endswith('.py'):
            if not os.path.isfile(args.model):
                raise FileNotFoundError(f'no config file at {args.model}')
            model = build_mmseg_for_export(args.model, checkpoint=args.checkpoint, trusted=args.trust_pickle)
            name = os.path.splitext(os.path.basename(args.model))[0]
        else:
            if not timm.models.is_model(args.model):
                close = suggest_model_names(args.model)
                raise UnknownModelError(f'Unknown encoder {args.model!r}.'
                                        + (f' Did you mean: {", ".join(close)}?' if close else ''))
            model = build_macmd_for_export(
                args.model, num_classes=args.num_classes or 9, checkpoint=args.checkpoint, trusted=args.trust_pickle,
                encoder_kwargs=model_kwargs)
            name = f'{args.model}+macmd'
        return model, ['seg_logits'], dict(modzoo_model=name, modzoo_task='semantic segmentation')
    model = zoo_onnx.build_export_model(
        args.model, checkpoint=args.checkpoint, features=args.features, num_classes=args.num_classes,
        trust_pickle=args.trust_pickle, model_kwargs=model_kwargs)
    if args.features:
        feats = _feature_metadata(model)
        return model, [f['name'] for f in feats], dict(modzoo_model=args.model, modzoo_features=feats)
    return model, ['logits'], dict(modzoo_model=args.model, modzoo_num_classes=getattr(model, 'num_classes', None))


def main(argv: Optional[Sequence[str]] = None) -> int:
    with torch.no_grad():  # scoped: the tool is also called in-process (tests, main job) and must not leak grad mode
        try:
            return _main(argv)
        except KeyboardInterrupt:  # graphs are written atomically: an interrupted export leaves no partial file
            return _fail(130, 'interrupted; nothing was written: run the export again')


class _Refused(Exception):
    """Ends the command with ``error: <message>`` and exit status ``code`` (raised by the steps of ``_main``)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format='%(message)s')
    try:
        return _run(args)
    except _Refused as e:
        return _fail(e.code, e.message)


def _run(args) -> int:
    if args.format != 'onnx':
        return _run_mobile(args)
    model_kwargs = _check_args(args)
    runtimes = _check_runtimes(args)
    output, int8_output = _output_paths(args, runtimes)
    model, output_names, metadata = _build_or_refuse(args, model_kwargs)
    reference = None
    if args.deploy:
        import copy
        reference = copy.deepcopy(model)  # --check then also proves the deployment rewrites and export forms exact
        prepare_for_export(model, zoo_onnx.export_target(args.runtime))

    img_size = tuple(args.img_size) if args.img_size else tuple(zoo_onnx.model_input_config(model)['input_size'][1:])
    calib = None
    if args.int8:  # read the calibration images before exporting: a bad folder fails fast, nothing written
        try:
            calib = _int8_images(args, model, img_size)
        except zoo_onnx.InvalidExportInput as e:
            raise _Refused(EXIT_BAD_INPUT, f'{e}; nothing was written') from None
    if args.checkpoint:
        metadata['modzoo_checkpoint'] = os.path.basename(args.checkpoint)
    result = _export(args, model, output, img_size, output_names, metadata, reference, runtimes)
    _print_export(args, result)
    if args.int8:
        return _export_int8(args, result.path, int8_output, calib, getattr(model, 'num_classes', None), runtimes)
    return EXIT_OK


def _run_mobile(args) -> int:
    """--format executorch|coreml: the same model, checkpoint and calibration options; modzoo.export.mobile exports."""
    problem = zoo_mobile.option_problem(args)
    if problem:
        raise _Refused(EXIT_BAD_INPUT, problem)
    args.check = True  # a phone export always checks itself (and keeps held-out images for --int8)
    model_kwargs = _check_args(args)
    try:
        paths = zoo_mobile.output_paths(args)
    except UsageError as e:
        raise _Refused(EXIT_BAD_INPUT, f'{e}; nothing was written') from None
    model, _, metadata = _build_or_refuse(args, model_kwargs)
    reference = model
    if args.deploy:  # BatchNorm folded and the target's export forms; the parity reference is the model as built
        import copy
        reference = copy.deepcopy(model)
        prepare_for_export(model, args.format)
    img_size = tuple(args.img_size) if args.img_size else tuple(zoo_onnx.model_input_config(model)['input_size'][1:])
    try:
        calib = _int8_images(args, model, img_size) if args.int8 else None
        zoo_mobile.export_mobile(args, model, reference, img_size, calib, paths, metadata)
    except zoo_onnx.ParityError as e:
        raise _Refused(EXIT_FAILED, f'{e}\nThe program does not match PyTorch; nothing more was written.') from None
    except zoo_onnx.InvalidExportInput as e:
        raise _Refused(EXIT_BAD_INPUT, f'{args.model}: {e}') from None
    except zoo_onnx.ExportError as e:
        raise _Refused(EXIT_FAILED, f'{args.model}: {e}') from None
    return EXIT_OK


def _check_args(args) -> Dict[str, Any]:
    """Everything that can be judged without building the model first; returns the parsed --model-kwargs."""
    try:
        model_kwargs = parse_model_kwargs(args.model_kwargs)
    except UsageError as e:
        raise _Refused(EXIT_BAD_INPUT, str(e)) from None
    for flag, value in (('--batch', args.batch), ('--num-classes', args.num_classes), ('--opset', args.opset)):
        if value is not None and value < 1:
            raise _Refused(EXIT_BAD_INPUT, f'{flag} {value}: must be a whole number of at least 1')
    try:
        zoo_onnx.require_optional(fp16=args.fp16, simplify=args.simplify)
        if args.img_size is not None:
            zoo_onnx.validate_export_args(args.img_size, args.batch, args.dynamic, args.exporter, args.opset)
    except zoo_onnx.ExportError as e:
        raise _Refused(EXIT_BAD_INPUT, str(e)) from None
    if 'spatial' in args.dynamic:
        blocker = zoo_onnx.spatial_export_blocker(args.model)
        if blocker:
            raise _Refused(EXIT_BAD_INPUT, f'{args.model} cannot be exported with a dynamic height/width: '
                                           f'{blocker}. Export with --dynamic batch at the size you deploy at.')
    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise _Refused(EXIT_BAD_INPUT, f'no checkpoint file at {args.checkpoint}')
    int8_problem = _int8_arg_problem(args)
    if int8_problem:
        raise _Refused(EXIT_BAD_INPUT, int8_problem)
    return model_kwargs


def _check_runtimes(args) -> List[str]:
    """The runtimes of --runtime, each installed when --check or --int8 will run it."""
    runtimes = runtime_list(args.runtime)
    if args.runtime == 'both' and not (args.check or args.int8):
        raise _Refused(EXIT_BAD_INPUT, f'--runtime {args.runtime} chooses where --check and --int8 run the graph: add '
                                       f'--check (or --int8), or drop --runtime')
    try:
        for runtime in runtimes if args.check or args.int8 else ():
            require_runtime(runtime)
        if args.int8 and OPENVINO in runtimes:
            zoo_ov.require_nncf()
    except (RuntimeUnavailable, zoo_onnx.InvalidExportInput) as e:
        raise _Refused(EXIT_BAD_INPUT, str(e)) from None
    return runtimes


def _output_paths(args, runtimes: Sequence[str]):
    """(graph path, int8 graph path or None), after checking every file this run writes before any work: each
    writable, none the same as another or an input."""
    stem = os.path.splitext(os.path.basename(args.model))[0] if args.model.endswith('.py') else args.model
    if args.head:
        stem += '-' + args.head
    output = args.output or zoo_onnx.default_output_path(stem, args.features, args.fp16)
    int8_output = (args.int8_output or os.path.splitext(output)[0] + '-int8.onnx') if args.int8 else None
    ov_ir = zoo_ov.default_openvino_int8_path(output) if args.int8 and OPENVINO in runtimes else None
    try:
        check_output_file(output, '--output')
        if int8_output:
            check_output_file(int8_output, '--int8-output')
        if ov_ir:
            check_output_file(ov_ir, '--output (its OpenVINO int8 IR)')
            check_output_file(os.path.splitext(ov_ir)[0] + '.bin', '--output (its OpenVINO int8 weights)')
        inputs = {'--checkpoint': args.checkpoint, 'MODEL': args.model if os.path.isfile(args.model) else None}
        outputs = {'--output': output, '--output weights': output + '.data', '--int8-output': int8_output}
        if ov_ir:
            outputs.update({'--output (its OpenVINO int8 IR)': ov_ir,
                            '--output (its OpenVINO int8 weights)': os.path.splitext(ov_ir)[0] + '.bin'})
        check_distinct_paths(outputs, inputs)
        for flag, path in (('--output', output), ('--int8-output', int8_output)):
            if path and not path.endswith('.onnx'):
                raise UsageError(f'{flag} {path}: an ONNX file name ends in .onnx; pass one that does')
        zoo_onnx.check_weights_file(output, {'yes': True, 'no': False}.get(args.external_data))
    except (UsageError, zoo_onnx.InvalidExportInput) as e:
        raise _Refused(EXIT_BAD_INPUT, f'{e}; nothing was written') from None
    return output, int8_output


def _build_or_refuse(args, model_kwargs: Dict[str, Any]):
    """``_build``'s (model, output names, metadata), its failures worded as one line each."""
    try:
        model, output_names, metadata = _build(args, model_kwargs)
    except UnknownModelError as e:
        raise _Refused(EXIT_BAD_INPUT, str(e)) from None
    except CheckpointMismatchError as e:
        raise _Refused(EXIT_BAD_INPUT, f'{e}\nThe checkpoint does not fit {args.model}; nothing was written.') from None
    except (FileNotFoundError, ImportError, RuntimeError, TypeError, ValueError) as e:
        kwargs_error = model_kwargs_error(args.model, e) if isinstance(e, TypeError) else None
        raise _Refused(EXIT_BAD_INPUT, str(kwargs_error) if kwargs_error else f'cannot build {args.model}: '
                                                                            f'{type(e).__name__}: {e}') from None
    return model, output_names, metadata


def _export(args, model, output: str, img_size, output_names, metadata, reference, runtimes):
    """``export_onnx`` with the command's options; its failures worded as one line each."""
    external = {'auto': None, 'yes': True, 'no': False}[args.external_data]
    try:
        return zoo_onnx.export_onnx(
            model, output, img_size=img_size, batch=args.batch, dynamic=args.dynamic, exporter=args.exporter,
            opset=args.opset, fp16=args.fp16, simplify=args.simplify, output_names=output_names,
            external_data=external, metadata=metadata, check=args.check, reference=reference, verbose=args.verbose,
            runtimes=runtimes)
    except zoo_onnx.ParityError as e:
        raise _Refused(EXIT_FAILED, f'{e}\nThe runtime does not match PyTorch; nothing was written.') from None
    except zoo_onnx.InvalidExportInput as e:
        raise _Refused(EXIT_BAD_INPUT, f'{args.model}: {e}\nNothing was written.') from None
    except zoo_onnx.ExportError as e:
        raise _Refused(EXIT_FAILED, f'{args.model}: {e}\nNothing was written.') from None
    except OSError as e:  # the output vanished or turned read-only after the check above
        raise _Refused(EXIT_BAD_INPUT, f'cannot write {output}: {e.strerror or e}; pass another --output') from None


def _print_export(args, result) -> None:
    size_mb = sum(os.path.getsize(f) for f in result.files()) / 2 ** 20
    print(f'exported {args.model} -> {result.path}' + (f' (+ {os.path.basename(result.data_path)})'
                                                        if result.data_path else ''))
    print(f'  {size_mb:.1f} MiB, {result.exporter} exporter, opset {result.opset}, {result.export_seconds:.1f} s; '
          f'input {result.input_shape} dynamic={result.dynamic}; outputs {", ".join(result.output_names)}'
          + ('; fp16' if args.fp16 else '') + ('; deploy' if args.deploy else '')
          + ('; simplified' if args.simplify else ''))
    for runtime, report in result.checks.items():
        print(report.format())
        print(f'parity: max abs diff {report.max_abs_diff:.2e} ({RUNTIME_NAMES[runtime]} vs PyTorch)')


def _int8_arg_problem(args) -> Optional[str]:
    if not args.int8:
        extra = [flag for flag, value in (('--int8-output', args.int8_output), ('--calib-data', args.calib_data),
                                          ('--int8-ops', args.int8_ops)) if value is not None]
        return f'{" and ".join(extra)} only apply with --int8' if extra else None
    if args.fp16 or args.features or args.head or args.model.endswith('.py'):
        return '--int8 quantizes an fp32 classifier export: drop --fp16 / --features / segmentation'
    if args.int8_ops and args.format != 'executorch':
        return '--int8-ops chooses the int8 ops of an ExecuTorch program: add --format executorch, or drop it'
    if not args.calib_data:
        return (f'--int8 needs calibration images: --calib-data DIR (an ImageFolder of images like the deployment '
                f'ones) or --calib-data {zoo_quant.DIGITS}')
    if args.calib_images < 1 or args.check_images < 1:
        return '--calib-images and --check-images must be at least 1'
    return None


def _int8_images(args, model, img_size):
    cfg = zoo_onnx.model_input_config(model)
    crop_pct = float((getattr(model, 'pretrained_cfg', None) or {}).get('crop_pct') or 1.0)
    check = args.check_images if args.check else 0
    calib = zoo_quant.calibration_split(args.calib_data, img_size, args.calib_images, check, mean=cfg['mean'],
                                        std=cfg['std'], crop_pct=crop_pct, in_chans=cfg['in_chans'])
    zoo_quant.check_calibration_count(len(calib[0]), args.batch if args.dynamic == 'none' else None)
    return calib


def _export_int8(args, fp32_path: str, output: str, calib, num_classes: Optional[int],
                 runtimes: Sequence[str]) -> int:
    calibration, held_out = calib
    try:
        int8 = zoo_quant.quantize_onnx_int8(fp32_path, output, calibration.images, batch=max(args.batch, 1),
                                            calibrate_method=args.calib_method, reduce_range=args.int8_reduce_range)
    except zoo_onnx.ExportError as e:
        return _fail(EXIT_FAILED, f'{args.model}: {e}\nThe fp32 graph {fp32_path} was written; no int8 graph.')
    print(f'exported int8 -> {int8.path}\n  {int8.format()} ({args.calib_data}, {args.calib_method})')
    graphs = [(int8.path, runtime) for runtime in runtimes]
    if OPENVINO in runtimes:
        try:
            ov_int8 = zoo_ov.quantize_openvino_int8(fp32_path, zoo_ov.default_openvino_int8_path(fp32_path),
                                                    calibration.images, batch=max(args.batch, 1))
        except zoo_onnx.ExportError as e:
            return _fail(EXIT_FAILED, f'{args.model}: {e}\nThe fp32 and QDQ int8 graphs were written; no OpenVINO IR.')
        print(f'exported OpenVINO int8 -> {ov_int8.path} (+ .bin)\n  {ov_int8.format()} ({args.calib_data})')
        graphs.append((ov_int8.path, OPENVINO))
    if args.check:
        for path, runtime in graphs:
            report = zoo_quant.compare_int8(fp32_path, path, held_out, num_classes=num_classes, runtime=runtime)
            print(f'{os.path.basename(path)}: {report.format()}')
    return EXIT_OK
