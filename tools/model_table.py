#!/usr/bin/env python
"""Params and GFLOPs of every registered modzoo model beside the papers' numbers.

    python tools/model_table.py                      # print the markdown table
    python tools/model_table.py --write-readme       # also refresh the table in README.md
    python tools/model_table.py --filter 'zoo_smt*' --json stats.json

Params are counted exactly; GFLOPs are fvcore multiply-accumulates (FMA = 1, the papers' convention) at the model's
default input size, with attention (scaled_dot_product_attention) counted through a handle (fvcore alone drops it).
Reported numbers come from ``modzoo/data/reported/<family>.json``, which cite their sources. A deviation above 1% is
marked and the data file's note (if any) explains it. Params are compared with a 1000-class head when the paper
reports them that way (the 22k models' checkpoints carry a 21842-class head).
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402
import timm  # noqa: E402

import modzoo  # noqa: E402
from modzoo.utils.flops import count_flops  # noqa: E402
from tools._bench_common import replace_marked  # noqa: E402
from modzoo.utils.reported import load_reported as _load_reported, load_reported_files  # noqa: E402

README = os.path.join(ROOT, 'README.md')
START, END = '<!-- model-table:start -->', '<!-- model-table:end -->'
TOLERANCE = 0.01


def load_reported():
    """(reported numbers by model name, source citation by family)."""
    files = load_reported_files()
    return _load_reported(), {family: data.get('source', '') for family, data in files.items()}


def _params_m(model_name: str, **kwargs) -> float:
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, **kwargs)
    return sum(p.numel() for p in model.parameters()) / 1e6


def measure(model_name: str) -> dict:
    """Params (default head and 1k head) and fvcore GFLOPs at the input size of the model's (or tag's) cfg."""
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False)
    cfg = model.pretrained_cfg
    input_size = tuple(cfg['input_size'])
    # weights do not matter for counting: materialise without initialising (fast for the 700M-param models)
    model = model.to_empty(device='cpu').eval()
    gflops, params = count_flops(model, input_size)
    return dict(
        model=model_name,
        family=modzoo.model_family(model_name.split('.')[0]),
        resolution=input_size[-1] if input_size[-1] == input_size[-2] else f'{input_size[-2]}x{input_size[-1]}',
        num_classes=cfg.get('num_classes'),
        params_m=params / 1e6,
        params_1k_m=_params_m(model_name, num_classes=1000) if cfg.get('num_classes') != 1000 else params / 1e6,
        gflops=gflops,
    )


def _deviates(ours, paper):
    return paper is not None and ours is not None and abs(ours - paper) / paper > TOLERANCE


def _fmt(v, digits=2):
    return '–' if v is None else f'{v:.{digits}f}'


def to_markdown(rows, reported) -> str:
    lines = [
        '| model | res | params (M) | paper params (M) | GFLOPs | paper GFLOPs | paper top-1 | |',
        '|---|---|---|---|---|---|---|---|',
    ]
    notes = []
    for r in rows:
        rep = reported.get(r['model'], {})
        rep_res = rep.get('resolution')
        same_res = rep_res is None or str(rep_res) == str(r['resolution'])
        ours_params = r['params_1k_m'] if rep.get('params_m') is not None else r['params_m']
        flags = []
        if _deviates(ours_params, rep.get('params_m')):
            flags.append('params')
        if same_res and _deviates(r['gflops'], rep.get('gflops')):
            flags.append('GFLOPs')
        mark = ''
        if flags or rep.get('note'):
            notes.append(f'{len(notes) + 1}. `{r["model"]}`: '
                         + (f'{" and ".join(flags)} differ by more than 1%. ' if flags else '')
                         + rep.get('note', ''))
            mark = ('⚠ ' if flags else '') + f'[{len(notes)}]'
        params_txt = _fmt(r['params_m'])
        if r['num_classes'] != 1000 and rep.get('params_m') is not None:
            params_txt += f' ({_fmt(r["params_1k_m"])} with 1k head)'
        gflops_paper = _fmt(rep.get('gflops')) if same_res else f'{_fmt(rep.get("gflops"))} @{rep_res}'
        lines.append(
            f'| `{r["model"]}` | {r["resolution"]} | {params_txt} | {_fmt(rep.get("params_m"))} | '
            f'{_fmt(r["gflops"])} | {gflops_paper} | {_fmt(rep.get("top1"), 1)} | {mark} |')
    text = '\n'.join(lines)
    if notes:
        text += '\n\nNotes:\n' + '\n'.join(notes)
    return text


def write_readme(table: str, sources: dict) -> None:
    with open(README) as f:
        readme = f.read()
    if START not in readme or END not in readme:
        raise SystemExit(f'README.md has no {START} ... {END} block to fill')
    src = '\n'.join(f'- {fam}: {s}' for fam, s in sorted(sources.items()))
    block = (f'{START}\n<!-- generated by tools/model_table.py; do not edit by hand -->\n{table}\n\n'
             f'Sources of the paper columns:\n{src}\n{END}')
    with open(README, 'w') as f:
        f.write(replace_marked(readme, START, END, block))


def main(argv=None):
    with torch.no_grad():  # scoped: the main job calls this in-process
        return _main(argv)


def _main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--filter', default='', help='wildcard on model names, e.g. "zoo_focalnet_*"')
    parser.add_argument('--write-readme', action='store_true', help='refresh the table block in README.md')
    parser.add_argument('--json', help='also write the measurements to this JSON file')
    args = parser.parse_args(argv)

    names = modzoo.list_models(args.filter)
    if not names:
        raise SystemExit(f'no registered modzoo model matches {args.filter!r}')
    reported, sources = load_reported()
    # reported rows keyed by `model.tag` are pretrained configs at another resolution (e.g. SMT-L at 384)
    names += sorted(k for k in reported if '.' in k and k.split('.')[0] in names)
    names.sort()
    rows = []
    for name in names:
        t0 = time.perf_counter()
        rows.append(measure(name))
        print(f'  {name}: {rows[-1]["params_m"]:.2f}M params, {rows[-1]["gflops"]:.2f} GFLOPs '
              f'({time.perf_counter() - t0:.1f}s)', file=sys.stderr)
    table = to_markdown(rows, reported)
    print(table)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    if args.write_readme:
        write_readme(table, sources)
        print(f'\nREADME.md model table updated ({len(rows)} models)', file=sys.stderr)


if __name__ == '__main__':
    main()
