#!/usr/bin/env python
"""ONNX Runtime (CPU execution provider) vs PyTorch eager: latency, throughput and peak memory, side by side.

    python tools/bench_onnx.py                                   # every registered model up to 300M params
    python tools/bench_onnx.py zoo_smt_tiny zoo_efficientmod_s --batches 1 8 --repeats 9
    python tools/bench_onnx.py --write-benchmarks                # refresh the table in BENCHMARKS.md
    python tools/bench_onnx.py --exporters zoo_focalnet_tiny_srf # compare the torchscript and dynamo exporters

Method. The model is built once (seed 0) and exported with the default exporter (dynamic batch). Each engine then runs
in its own worker process, PyTorch eager (``torch.no_grad()``, fp32) in one and ONNX Runtime (CPU EP,
``ORT_ENABLE_ALL``) in the other, with the same number of intra-op threads, the same input and, for PyTorch, the same
weights (same seed). The parent alternates single forward passes between them (warm-up first, then
torch, ORT, torch, ORT, ...) so the noise of a shared machine hits both alike, and reports medians. Only one worker
computes at any time. Peak memory is each worker's peak resident set (VmHWM) minus its resident set after imports,
i.e. weights + runtime buffers + activations, beside the process total. Both workers' outputs are compared first
(max abs diff) so the timed graphs are known to compute the same thing.

``--exporters`` instead measures the two torch.onnx exporters per model: export time (CPU seconds of this process),
whether a graph with dynamic batch and size exports, and its parity with PyTorch at the export size and two others.
"""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools._bench_common import cpu_name, proc_status_mib, replace_marked, update_marked_file  # noqa: E402

BENCHMARKS = os.path.join(ROOT, 'BENCHMARKS.md')
START, END = '<!-- onnx:start -->', '<!-- onnx:end -->'
MAX_PARAMS_DEFAULT = 300e6
TORCH, ORT = 'torch', 'ort'


# ----------------------------------------------------------------------------------------------------------------
# workers: each engine in its own process (the ORT worker never imports torch)


def _worker(engine: str, spec: dict) -> None:
    """Line protocol on stdin/stdout: one JSON command per line, one JSON reply per line."""
    import numpy as np
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not corrupt the protocol
    threads = spec['threads']
    if engine == TORCH:
        import torch
        torch.set_num_threads(threads)
        torch.set_grad_enabled(False)
        import modzoo
        rss_import = proc_status_mib()
        torch.manual_seed(spec['seed'])
        model = modzoo.create_model(spec['model'], exportable=True, **spec.get('model_kwargs', {})).eval()

        def forward(x):
            return model(torch.from_numpy(x)).numpy()
    else:
        import onnxruntime as ort
        rss_import = proc_status_mib()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(spec['onnx'], options, providers=['CPUExecutionProvider'])
        input_name = session.get_inputs()[0].name

        def forward(x):
            return session.run(None, {input_name: x})[0]

    inputs = {}

    def get_input(batch):
        if batch not in inputs:
            rng = np.random.default_rng(batch)
            inputs[batch] = rng.standard_normal((batch, 3, spec['size'], spec['size'])).astype(np.float32)
        return inputs[batch]

    def reply(obj):
        out.write(json.dumps(obj) + '\n')
        out.flush()

    reply(dict(ready=True, rss_import=rss_import, rss_loaded=proc_status_mib()))
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd['cmd'] == 'run':
            x = get_input(cmd['batch'])
            start = time.perf_counter()
            forward(x)
            reply(dict(seconds=time.perf_counter() - start))
        elif cmd['cmd'] == 'save':
            np.save(cmd['path'], forward(get_input(cmd['batch'])))
            reply(dict(ok=True))
        elif cmd['cmd'] == 'mem':
            reply(dict(peak=proc_status_mib('VmHWM'), rss_import=rss_import))
        elif cmd['cmd'] == 'quit':
            reply(dict(bye=True))
            return


class Worker:
    def __init__(self, engine: str, spec: dict):
        env = dict(os.environ)
        self.engine = engine
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--worker', engine, '--worker-spec', json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f'{self.engine} worker died (exit code {self.proc.wait()})')
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + '\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask(cmd='quit')
            except (BrokenPipeError, RuntimeError):
                pass
            self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------------------------------------------
# benchmark


def machine_description(threads: int) -> str:
    import onnxruntime
    import torch
    try:
        with open('/proc/meminfo') as f:
            mem_gib = int(f.readline().split()[1]) / 2 ** 20
    except OSError:
        mem_gib = float('nan')
    return (f'{cpu_name()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {threads} intra-op threads per engine; '
            f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, Python {platform.python_version()}')


def num_params(model_name: str, model_kwargs: dict) -> int:
    import torch
    import modzoo
    with torch.device('meta'):
        model = modzoo.create_model(model_name, **model_kwargs)
    return sum(p.numel() for p in model.parameters())


def bench_model(model_name: str, size: int, batches: Sequence[int], repeats: int, warmup: int, threads: int,
                workdir: str, model_kwargs: Optional[dict] = None) -> dict:
    import numpy as np
    import torch
    from modzoo.export import onnx as zoo_onnx
    model_kwargs = model_kwargs or {}
    torch.manual_seed(0)
    model = zoo_onnx.build_export_model(model_name, model_kwargs=model_kwargs)
    path = os.path.join(workdir, model_name + '.onnx')
    start = time.process_time()
    result = zoo_onnx.export_onnx(model, path, img_size=(size, size), batch=max(batches), dynamic='batch',
                                  output_names=['logits'])
    export_cpu_s = time.process_time() - start
    del model

    spec = dict(model=model_name, model_kwargs=model_kwargs, seed=0, size=size, threads=threads, onnx=path)
    workers = {TORCH: Worker(TORCH, spec), ORT: Worker(ORT, spec)}
    try:
        outs = {}
        for engine, worker in workers.items():
            out_path = os.path.join(workdir, f'{engine}.npy')
            worker.ask(cmd='save', batch=1, path=out_path)
            outs[engine] = np.load(out_path)
        diff = float(np.abs(outs[TORCH] - outs[ORT]).max())
        rows = []
        for batch in batches:
            times = {TORCH: [], ORT: []}
            for i in range(warmup + repeats):
                order = (TORCH, ORT) if i % 2 == 0 else (ORT, TORCH)
                for engine in order:
                    seconds = workers[engine].ask(cmd='run', batch=batch)['seconds']
                    if i >= warmup:
                        times[engine].append(seconds)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append(dict(
                batch=batch, torch_ms=med[TORCH] * 1e3, ort_ms=med[ORT] * 1e3,
                torch_img_s=batch / med[TORCH], ort_img_s=batch / med[ORT], speedup=med[TORCH] / med[ORT]))
        mem = {engine: worker.ask(cmd='mem') for engine, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
        for f in result.files():
            os.remove(f)
    return dict(
        model=model_name, size=size, repeats=repeats, max_abs_diff=diff, export_cpu_s=export_cpu_s, rows=rows,
        torch_peak_mib=mem[TORCH]['peak'], ort_peak_mib=mem[ORT]['peak'],
        torch_model_mib=mem[TORCH]['peak'] - mem[TORCH]['rss_import'],
        ort_model_mib=mem[ORT]['peak'] - mem[ORT]['rss_import'],
    )


GOAL_SPEEDUP = 1.5  # the deployment goal: ONNX Runtime at least 1.5x eager PyTorch on CPU


def latency_markdown(results: List[dict], machine: str, command: str, skipped: Dict[str, str],
                     load: str, date: Optional[str] = None) -> str:
    lines = [
        '### ONNX Runtime (CPU EP) vs PyTorch eager at 224x224',
        '',
        f'Machine: {machine}. Shared with other engineers\' jobs while measured (load average {load}), so each figure '
        f'is a median over interleaved repeats (torch, ORT, torch, ORT, ...). '
        f'Date: {date or time.strftime("%Y-%m-%d")}. Command: `{command}`.',
        '',
        'Latency is the median of one forward pass; throughput = batch / latency; speed-up = eager latency / ORT '
        'latency. Peak memory: the worker\'s peak resident set minus its resident set after imports (weights, '
        'runtime buffers, activations; peak over both batches), process total in brackets. fp32, exported '
        'with the default (torchscript) exporter, dynamic batch.',
        '',
    ]
    if ' 1 intra-op threads' in machine:
        lines += [
            'One intra-op thread per engine, because the machine is shared: with two threads, eager PyTorch\'s OpenMP '
            'regions stall whenever another job holds one of the two cores (EfficientMod-XXS, batch 1: 84-110 ms with '
            'one thread vs 750-1680 ms with two, same minute), which would measure the scheduler, not the engines.',
            '',
        ]
    lines += [
        '| model | batch | eager ms | ORT ms | eager img/s | ORT img/s | ORT speed-up | eager peak MiB | '
        'ORT peak MiB | max abs diff |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in results:
        for row in r['rows']:
            lines.append(
                f'| `{r["model"]}` | {row["batch"]} | {row["torch_ms"]:.1f} | {row["ort_ms"]:.1f} | '
                f'{row["torch_img_s"]:.1f} | {row["ort_img_s"]:.1f} | **{row["speedup"]:.2f}x** | '
                f'{r["torch_model_mib"]:.0f} ({r["torch_peak_mib"]:.0f}) | {r["ort_model_mib"]:.0f} '
                f'({r["ort_peak_mib"]:.0f}) | {r["max_abs_diff"]:.1e} |')
    if results:
        speedups = [row['speedup'] for r in results for row in r['rows']]
        lines += ['', f'ORT speed-up over eager: median {statistics.median(speedups):.2f}x, '
                      f'min {min(speedups):.2f}x, max {max(speedups):.2f}x over {len(speedups)} rows.']
        for batch in sorted({row['batch'] for r in results for row in r['rows']}):
            at_batch = [row['speedup'] for r in results for row in r['rows'] if row['batch'] == batch]
            reached = sum(x >= GOAL_SPEEDUP for x in at_batch)
            lines.append(f'Batch {batch}: median {statistics.median(at_batch):.2f}x; {reached} of {len(at_batch)} '
                         f'rows reach the {GOAL_SPEEDUP}x goal; min {min(at_batch):.2f}x.')
    for name, why in skipped.items():
        lines.append(f'\nNot benchmarked: `{name}` ({why}).')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# exporter comparison


def compare_exporters(model_name: str, size: int, model_kwargs: Optional[dict] = None) -> List[dict]:
    import torch
    from modzoo.export import onnx as zoo_onnx
    rows = []
    torch.manual_seed(0)
    model = zoo_onnx.build_export_model(model_name, model_kwargs=model_kwargs or {})
    with tempfile.TemporaryDirectory() as tmp:
        for exporter in zoo_onnx.EXPORTERS:
            row = dict(model=model_name, exporter=exporter, size=size)
            blocker = zoo_onnx.spatial_export_blocker(model_name)
            dynamic = 'batch' if blocker else 'batch,spatial'
            start = time.process_time()
            try:
                result = zoo_onnx.export_onnx(
                    model, os.path.join(tmp, f'{exporter}.onnx'), img_size=(size, size), dynamic=dynamic,
                    exporter=exporter, output_names=['logits'], check=True)
                row.update(ok=True, dynamic=dynamic, max_abs_diff=result.check.max_abs_diff,
                           export_s=result.export_seconds, sizes=sorted({r.size for r in result.check.runs}))
            except zoo_onnx.ExportError as e:
                row.update(ok=False, dynamic=dynamic, error=str(e).splitlines()[0][:300])
            row['total_cpu_s'] = time.process_time() - start
            rows.append(row)
    return rows


def exporters_markdown(rows: List[dict], machine: str, command: str, date: Optional[str] = None) -> str:
    lines = [
        '### Exporter comparison: torchscript (`dynamo=False`) vs dynamo (`dynamo=True`)',
        '',
        f'Machine: {machine}. Date: {date or time.strftime("%Y-%m-%d")}. Command: `{command}`.',
        '',
        'Each model exported at the size shown with a dynamic batch and (unless listed as spatially static) dynamic '
        'height/width, then checked in ONNX Runtime against PyTorch at batches 1 and 3 and at the export size plus '
        'two others, random and photographic inputs. Export seconds: wall time of `torch.onnx.export` alone; '
        'total CPU: export + post-processing + checks, CPU seconds of the process (robust to the shared machine).',
        '',
        '| model | exporter | dynamic | export s | total CPU s | max abs diff | result |',
        '|---|---|---|---|---|---|---|',
    ]
    for r in rows:
        result = 'OK' if r['ok'] else 'FAILED: ' + r['error'].replace('|', '/')
        diff = f'{r["max_abs_diff"]:.1e}' if r['ok'] else '-'
        export_s = f'{r["export_s"]:.1f}' if r['ok'] else '-'
        lines.append(f'| `{r["model"]}` | {r["exporter"]} | {r["dynamic"]} | {export_s} | {r["total_cpu_s"]:.1f} | '
                     f'{diff} | {result} |')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------------------------
# BENCHMARKS.md section


def write_section(parts: Dict[str, str]) -> None:
    """Replace this tool's sub-blocks (``<!-- onnx-latency -->``, ``<!-- onnx-exporters -->``) in its section."""
    content = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else ''
    if START in content:
        section = re.search(re.escape(START) + '(.*?)' + re.escape(END), content, flags=re.S).group(1)
    else:
        section = '\n## ONNX export and ONNX Runtime\n\n<!-- onnx-exporters -->\n\n<!-- onnx-latency -->\n'
    for key, text in parts.items():
        tag_start, tag_end = f'<!-- onnx-{key} -->', f'<!-- /onnx-{key} -->'
        block = f'{tag_start}\n{text}\n{tag_end}'
        if tag_start in section and tag_end not in section:  # the placeholder of a new section
            section = section.replace(tag_start, block)
        else:
            section = replace_marked(section, tag_start, tag_end, block)
    update_marked_file(BENCHMARKS, START, END, f'{START}{section}{END}')


def merge_runs(paths: Sequence[str]) -> dict:
    """One run from several ``--json`` files of the same kind (e.g. a long benchmark done in parts)."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    if len({r['kind'] for r in runs}) != 1:
        raise SystemExit('--from-json: the files hold different kinds of runs')
    merged = dict(runs[0], results=[], skipped={})
    for r in runs:
        merged['results'] += r['results']
        merged['skipped'].update(r.get('skipped', {}))
    done = {r['model'] for r in merged['results']}
    merged['skipped'] = {k: v for k, v in merged['skipped'].items() if k not in done}
    if len(runs) > 1:
        merged['command'] = '`; `'.join(r['command'] for r in runs if r.get('command'))
        merged['load'] = '; '.join(r['load'] for r in runs if r.get('load'))
        merged['date'] = max(r.get('date') or '' for r in runs) or None
    return merged

def run_benchmarks(args, argv) -> dict:
    import torch
    threads = torch.get_num_threads()
    try:
        with torch.no_grad():  # scoped: tests call this in-process
            return _run_benchmarks(args, argv)
    finally:
        torch.set_num_threads(threads)


def _run_benchmarks(args, argv) -> dict:
    import torch
    import modzoo
    torch.set_num_threads(args.threads)
    names = args.models or modzoo.list_models()
    command = 'python tools/bench_onnx.py ' + ' '.join(argv if argv is not None else sys.argv[1:])
    command = re.sub(r' --json \S+', '', command).strip()
    run = dict(machine=machine_description(args.threads), command=command, results=[], skipped={}, load='',
               date=time.strftime('%Y-%m-%d'))
    load_start = os.getloadavg()[0]

    def save_partial():  # long runs: keep what is done if the run is cut short
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(dict(run, partial=True), f, indent=1)

    if args.exporters:
        run['kind'] = 'exporters'
        for name in names:
            for row in compare_exporters(name, args.exporters_size):
                run['results'].append(row)
                status = f'diff {row["max_abs_diff"]:.1e}' if row['ok'] else row['error']
                print(f'{name:<32} {row["exporter"]:<12} {row["dynamic"]:<14} cpu {row["total_cpu_s"]:6.1f}s  '
                      f'{status}', flush=True)
            save_partial()
        return run
    run['kind'] = 'latency'
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            params = num_params(name, {})
            if params > args.max_params:
                run['skipped'][name] = f'{params / 1e6:.0f}M parameters > --max-params {args.max_params / 1e6:.0f}M'
                print(f'{name:<32} skipped: {run["skipped"][name]}', flush=True)
                continue
            try:
                r = bench_model(name, args.size, args.batches, args.repeats, args.warmup, args.threads, workdir)
            except Exception as e:  # one model's failure (e.g. out of memory) must not lose the others' results
                run['skipped'][name] = f'failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
                print(f'{name:<32} {run["skipped"][name]}', flush=True)
                continue
            run['results'].append(r)
            for row in r['rows']:
                print(f'{name:<32} b{row["batch"]:<3} eager {row["torch_ms"]:8.1f} ms  ORT {row["ort_ms"]:8.1f} ms'
                      f'  x{row["speedup"]:.2f}  peak MiB eager {r["torch_model_mib"]:.0f} ORT '
                      f'{r["ort_model_mib"]:.0f}  diff {r["max_abs_diff"]:.1e}', flush=True)
            run['load'] = f'{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} cores'
            save_partial()
    run['load'] = f'{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end, {os.cpu_count()} cores'
    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', help='model names (default: every registered model up to --max-params)')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--repeats', type=int, default=7, help='timed forwards per engine and batch')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=os.cpu_count(), help='intra-op threads of each engine')
    parser.add_argument('--max-params', type=float, default=MAX_PARAMS_DEFAULT,
                        help='skip larger models (default 300e6: xlarge/huge FocalNets need several GB per engine)')
    parser.add_argument('--exporters', action='store_true', help='compare the two exporters instead')
    parser.add_argument('--exporters-size', type=int, default=64, help='export size for --exporters')
    parser.add_argument('--json', help='also write the raw results here')
    parser.add_argument('--from-json', nargs='+', metavar='FILE',
                        help='only render (and with --write-benchmarks write) saved --json runs (several are merged)')
    parser.add_argument('--write-benchmarks', action='store_true', help='update the ONNX section of BENCHMARKS.md')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    parser.add_argument('--worker-spec', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, json.loads(args.worker_spec))
        return 0

    if args.from_json:
        run = merge_runs(args.from_json)
    else:
        run = run_benchmarks(args, argv)
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(run, f, indent=1)
    if run['kind'] == 'exporters':
        text = exporters_markdown(run['results'], run['machine'], run['command'], run.get('date'))
    else:
        text = latency_markdown(run['results'], run['machine'], run['command'], run['skipped'], run['load'],
                                run.get('date'))
    print()
    print(text)
    if args.write_benchmarks:
        write_section({run['kind']: text})
        print(f'\nwrote the {run["kind"]} table into {BENCHMARKS}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
