"""``tools/export_onnx.py --format executorch|coreml``: the phone targets of the export command.

    python tools/export_onnx.py zoo_efficientmod_xxs --format executorch --checkpoint m.pth --num-classes 10 \\
        --img-size 224 224 -o m.pte [--int8 --calib-data DIR|digits]
    python tools/export_onnx.py zoo_efficientmod_xxs --format coreml [--fp16] -o m.mlpackage

The command line itself (parsing, model building, calibration images) is ``modzoo.export.cli``'s; this module
refuses the options that only mean something for ONNX, picks the output paths, runs
:func:`~modzoo.export.executorch.export_executorch` / :func:`~modzoo.export.coreml.export_coreml` and writes the
run's one parity report (``<output>.report.json``, also printed). A phone program has a fixed input: batch 1 at the
export size.
"""
import os
from typing import Any, Dict, List, Optional, Tuple

from modzoo.utils.cli import UsageError, check_distinct_paths, check_output_file

from . import coreml as zoo_coreml
from . import executorch as zoo_et
from .onnx import DEFAULT_EXPORTER, DEFAULT_SIMPLIFY

__all__ = ['FORMATS', 'MOBILE_FORMATS', 'option_problem', 'output_paths', 'export_mobile']

FORMATS = ('onnx', 'executorch', 'coreml')
MOBILE_FORMATS = FORMATS[1:]
SUFFIX = {'executorch': '.pte', 'coreml': '.mlpackage'}


def _onnx_only(args) -> List[str]:
    """The ONNX-only options this command line sets to something other than their default."""
    given = [('--opset', args.opset is not None), ('--exporter', args.exporter != DEFAULT_EXPORTER),
             ('--simplify', args.simplify != DEFAULT_SIMPLIFY), ('--external-data', args.external_data != 'auto'),
             ('--runtime', args.runtime != 'ort'), ('--features', args.features), ('--head', bool(args.head)),
             ('--calib-method', args.calib_method != 'minmax'), ('--int8-reduce-range', args.int8_reduce_range),
             ('--dynamic', args.dynamic not in ('batch', None)), ('--batch', args.batch != 1)]
    return [flag for flag, set_ in given if set_]


def option_problem(args) -> Optional[str]:
    """One line naming what this ``--format`` cannot do with the given options (and the fix), or None."""
    fmt = args.format
    if args.model.endswith('.py'):
        return f'--format {fmt} exports classifiers; a segmentation config exports with --format onnx'
    flags = _onnx_only(args)
    if flags:
        return (f'--format {fmt} does not take {", ".join(flags)} (ONNX options; a phone program has batch 1 at a '
                f'fixed --img-size): drop {"it" if len(flags) == 1 else "them"}')
    if fmt == 'coreml' and args.int8:
        return '--int8 applies to --format executorch or onnx; for a smaller Core ML package use --fp16'
    if fmt == 'executorch' and args.fp16:
        return '--fp16 applies to --format coreml or onnx; for a smaller, faster .pte use --int8 --calib-data DIR'
    try:
        (zoo_et.require_executorch if fmt == 'executorch' else zoo_coreml.require_coremltools)()
    except zoo_et.InvalidExportInput as e:
        return str(e)
    return None


def output_paths(args) -> Tuple[str, Optional[str], str]:
    """(program, int8 program or None, report JSON), each checked writable and distinct; UsageError else."""
    suffix = SUFFIX[args.format]
    stem = args.model.replace('/', '_').replace(':', '_') + ('-fp16' if args.fp16 else '')
    output = args.output or stem + suffix
    int8 = (args.int8_output or os.path.splitext(output)[0] + '-int8' + suffix) if args.int8 else None
    report = os.path.splitext(output)[0] + '.report.json'
    for flag, path in (('--output', output), ('--int8-output', int8)):
        if path and not path.endswith(suffix):
            raise UsageError(f'{flag} {path}: a --format {args.format} file name ends in {suffix}; pass one that does')
    if args.format == 'coreml' and os.path.lexists(output) \
            and not os.path.isfile(os.path.join(output, 'Manifest.json')):
        raise UsageError(f'--output {output} exists and is not a Core ML package: move it away or pass another')
    if args.format == 'executorch':
        check_output_file(output, '--output')
        if int8:
            check_output_file(int8, '--int8-output')
    check_output_file(report, '--output (its report)')
    check_distinct_paths({'--output': output, '--int8-output': int8, '--output (its report)': report},
                         {'--checkpoint': args.checkpoint})
    return output, int8, report


def _macos_command(args, output: str) -> str:
    extra = (f' --checkpoint {args.checkpoint}' if args.checkpoint else '') \
        + (f' --num-classes {args.num_classes}' if args.num_classes else '')
    return f'python tools/check_coreml.py {output} {args.model}{extra}'


def export_mobile(args, model, reference, img_size: Tuple[int, int], calib, paths, metadata: Dict[str, Any]) \
        -> List[Any]:
    """The exports of one run (fp32, and int8 with ``calib``), each report printed; the run's report written to
    ``paths[2]``. Raises the exporters' ExportError / ParityError / InvalidExportInput."""
    output, int8_output, report_path = paths
    reports: List[Any] = []
    if args.format == 'coreml':
        reports.append(zoo_coreml.export_coreml(
            model, output, img_size, 'fp16' if args.fp16 else 'fp32', metadata=metadata,
            macos_command=_macos_command(args, output)))
    else:
        reports.append(zoo_et.export_executorch(model, output, img_size, reference=reference))
        if calib is not None:
            calibration, held_out = calib
            fp32 = zoo_et.PteProgram(output)
            int8 = zoo_et.export_executorch(model, int8_output, img_size, calibration=calibration.images,
                                            reference=reference, extra_timers={'fp32 .pte': fp32.run},
                                            int8_ops=args.int8_ops or 'all')
            if len(held_out):
                int8.int8_check = zoo_et.held_out_agreement(int8.path, reference, held_out,
                                                            getattr(model, 'num_classes', None))
            reports.append(int8)
    for report in reports:
        print(report.format())
    zoo_et.write_report_json(report_path, reports, dict(model=args.model, format=args.format,
                                                        img_size=list(img_size), checkpoint=args.checkpoint))
    print(f'report -> {report_path}')
    return reports
