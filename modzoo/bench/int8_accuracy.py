"""Held-out top-1 of every int8 variant on the main job's digits model, in the runtime each one is meant for.

    python tools/main_job.py --no-report                 # trains the digits model into output/main_job
    python tools/int8_accuracy.py output/main_job        # then: fp32 vs every int8 variant, ORT and OpenVINO

The digits model (``zoo_efficientmod_xxs`` trained at 32x32 by the main job) is the only model whose accuracy can
be measured offline: no ImageNet weights or images are available here. Every variant is calibrated on the same
training images the main job uses and evaluated on the 359 validation images the main job validates on (one image is
0.28 points). Variants: ONNX Runtime's QDQ graph as ``modzoo.export.quantize`` makes it (Conv/MatMul/Gemm), the same
with the residual Adds and the gate/modulation Multiplies quantized too, each run in ONNX Runtime and in OpenVINO;
and NNCF's OpenVINO IR with its presets. Load-independent: no timing.
"""
import argparse
import os
import re
import sys
import tempfile
import time

from ..utils.cli import OneLineArgumentParser
from .common import BENCHMARKS
from .report import Block, check_json_output, escape, markdown_table, write_report

__all__ = ['ORT_VARIANTS', 'NNCF_VARIANTS', 'input_paths', 'measure', 'to_markdown', 'main']

START, END = '<!-- int8-accuracy:start -->', '<!-- int8-accuracy:end -->'

ORT_VARIANTS = {
    'QDQ Conv/MatMul/Gemm (default)': ('Conv', 'MatMul', 'Gemm'),
    'QDQ + Add/Mul': ('Conv', 'MatMul', 'Gemm', 'Add', 'Mul'),
}
NNCF_VARIANTS = {  # label: (preset, model type)
    'NNCF mixed, transformer (default)': ('mixed', 'transformer'),
    'NNCF mixed': ('mixed', None),
    'NNCF performance': ('performance', None),
}


def input_paths(work_dir: str):
    """(digits folder, trained checkpoint, fp32 graph) of the main job's ``work_dir``: what this tool reads."""
    from modzoo.main_job import MODEL
    return (os.path.join(work_dir, 'digits'), os.path.join(work_dir, 'train', 'best.pth'),
            os.path.join(work_dir, f'{MODEL}_digits.onnx'))


def measure(work_dir: str, calib_images: int = 256) -> dict:
    from modzoo.export import quantize
    from modzoo.export.onnx import model_input_config
    from modzoo.main_job import IMG_SIZE, MODEL, held_out_set
    from modzoo.runtimes import available
    from modzoo.train.validate import load_model_for_inference
    data_dir, checkpoint, fp32 = input_paths(work_dir)
    for path in (data_dir, checkpoint, fp32):
        if not os.path.exists(path):
            raise SystemExit(f'error: no {path}: run python tools/main_job.py --work-dir {work_dir} first')
    model, cfg, _ = load_model_for_inference(MODEL, checkpoint)
    norm = model_input_config(model)
    calib = quantize.load_calibration_images(os.path.join(data_dir, 'train'), (IMG_SIZE, IMG_SIZE), norm['mean'],
                                             norm['std'], count=calib_images)
    val = held_out_set(cfg, data_dir)
    runtimes = ['ort'] + (['openvino'] if available('openvino') else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, ops in ORT_VARIANTS.items():
            q = quantize.quantize_onnx_int8(fp32, os.path.join(tmp, 'q.onnx'), calib.images, op_types=ops)
            for runtime in runtimes:
                report = quantize.compare_int8(fp32, q.path, val, num_classes=10, runtime=runtime)
                rows.append(dict(variant=label, file_mib=q.size_mib, **report.as_dict()))
        if 'openvino' in runtimes:
            from modzoo.export import openvino as zoo_ov
            if zoo_ov.nncf_available():
                for label, (preset, model_type) in NNCF_VARIANTS.items():
                    q = zoo_ov.quantize_openvino_int8(fp32, os.path.join(tmp, 'q.xml'), calib.images, preset=preset,
                                                      model_type=model_type)
                    report = quantize.compare_int8(fp32, q.path, val, num_classes=10, runtime='openvino')
                    rows.append(dict(variant=label, file_mib=q.size_mib, **report.as_dict()))
    return dict(model=MODEL, work_dir=work_dir, calibration_images=len(calib), rows=rows)


def to_markdown(result: dict) -> str:
    lines = ['### int8 accuracy on the digits model (the only accuracy measurable offline)', '',
             f'Command: `{escape(result["command"])}`, after `python tools/main_job.py --no-report --work-dir '
             f'{escape(result["work_dir"])}`. Date: {escape(result["date"])}. '
             f'`{result["model"]}` trained by the main job at 32x32; every variant calibrated on '
             f'{result["calibration_images"]} training images and evaluated on the 359 validation images (one image '
             'is 0.28 points). No ImageNet weights or images are available offline, so this is the only accuracy '
             'figure; check your own data with `tools/export_onnx.py --int8 --check`.', '']
    names = {'ort': 'ONNX Runtime', 'openvino': 'OpenVINO'}
    lines += markdown_table(
        ['int8 variant', 'runtime', 'fp32 top-1', 'int8 top-1', 'drop (points)', 'agreement with fp32', 'file MiB'],
        ([r['variant'], names[r['runtime']], f'{r["fp32_top1"]:.2f}%', f'{r["int8_top1"]:.2f}%',
          f'{r["fp32_top1"] - r["int8_top1"]:.2f}', f'{r["top1_agreement"]:.2f}%', f'{r["file_mib"]:.1f}']
         for r in result['rows']))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = OneLineArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('work_dir', nargs='?', default=os.path.join('output', 'main_job'),
                        help='the main job\'s --work-dir (default output/main_job)')
    parser.add_argument('--calib-images', type=int, default=256, help='training images that calibrate (as the job)')
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--write-benchmarks', action='store_true', help='refresh the block in BENCHMARKS.md')
    args = parser.parse_args(argv)
    if args.calib_images < 1:
        parser.error(f'--calib-images {args.calib_images}: must be at least 1 (the images that set the int8 ranges)')
    _, checkpoint, fp32 = input_paths(os.path.abspath(args.work_dir))
    check_json_output(parser, args.json, inputs={'the checkpoint': checkpoint, 'the fp32 graph': fp32},
                      outputs={'--write-benchmarks': BENCHMARKS if args.write_benchmarks else None})
    result = measure(os.path.abspath(args.work_dir), args.calib_images)
    command = 'python tools/int8_accuracy.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    result['command'] = re.sub(r' --json \S+', '', command).strip()
    result['date'] = time.strftime('%Y-%m-%d')
    text = to_markdown(result)
    print(text)
    write_report(result, args.json, [Block(BENCHMARKS, START, END, text)] if args.write_benchmarks else [])
    return 0


if __name__ == '__main__':
    sys.exit(main())
