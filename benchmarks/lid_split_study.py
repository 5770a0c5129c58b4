"""Single supernet vs a NAS-LID / GM-NAS split at equal warm-up steps, on a built benchmark's truth.

    .venv/bin/python benchmarks/lid_split_study.py pipelines/bench_synth.yaml --from reports/bench_synth \\
        --set 'warmup.fractions=[0.1]' --set 'split={method: lid, levels: 1}' \\
        --set output=runs/lid_split_synth [--estimators oneshot sigeo] [--out DIR] [--control] \
        [--split lid:1 lid:2 lid:3 gm:2]

The pipeline's ``split:`` section (here given by ``--set``) says how to split; the warm-ups and the
split go to the pipeline's ``output`` (cached: a rerun reuses them), ``split_results.csv`` and
``split_report.md`` to ``--out`` (default: the output folder). ``--split METHOD:LEVELS ...`` makes and
scores several splits beside one single supernet (scored once). See :mod:`recnas.lid.bench`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("--from", dest="from_dir", required=True, help="a build folder holding the ground truth")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--estimators", nargs="+", default=["oneshot", "sigeo"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--control", action="store_true",
                    help="also score the parent fine-tuned whole (no split) for the same steps, and the parent alone")
    ap.add_argument("--split", nargs="+", default=None, metavar="METHOD:LEVELS",
                    help="splits to make and score, e.g. lid:1 lid:2 gm:2 (default: the split: section's)")
    a = ap.parse_args()
    variants = None
    if a.split:
        variants = []
        for v in a.split:
            method, sep, levels = v.partition(":")
            if not sep or not levels.isdigit():
                ap.error(f"--split: expected METHOD:LEVELS (e.g. lid:2), got {v!r}")
            variants.append((method, int(levels)))

    from recnas.bench.config import load_bench
    from recnas.lid.bench import run_split_study

    cfg = load_bench(a.pipeline, a.set)
    path = run_split_study(cfg, a.pipeline, a.from_dir, a.out, tuple(a.estimators), control=a.control,
                           variants=variants)
    print(path.read_text())


if __name__ == "__main__":
    main()
