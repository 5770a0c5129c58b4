"""``recnas demo``: the whole job on built-in synthetic data, with no download.

Synthesises Criteo-format rows, prepares them, warms up a NASRec-Small supernet, searches it with
the default estimator (ZiCo with the per-tensor mean, fresh weights; regularized evolution at
scaled-down settings), exports the best architecture, trains it and DLRM the same way, and prints
their test log loss and AUC side by side. The settings are
``pipelines/demo.yaml`` (any key can be changed with ``--set key=value``); it is an ordinary search
pipeline, so ``recnas search pipelines/demo.yaml`` does the same job, and rerunning continues a
killed demo where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["register", "run", "DEMO_PIPELINE"]

DEMO_PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "demo.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the whole job on built-in synthetic data", description=__doc__)
    p.add_argument("--pipeline", type=Path, default=DEMO_PIPELINE,
                   help=f"the demo's pipeline file (default {DEMO_PIPELINE})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline key, e.g. --set search.budget=32 (repeatable)")
    p.add_argument("--out", default=None, help="run folder (default: the pipeline's output, runs/demo)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.search.config import load_pipeline
    from recnas.search.final import format_final
    from recnas.study import StoreError as JournalError
    from recnas.search.runner import run_search
    from recnas.train.distributed import init_distributed, shutdown_distributed

    overrides = list(args.overrides) + ([f"output={args.out}"] if args.out else [])
    cfg = load_pipeline(args.pipeline, overrides)
    if cfg.final.top < 1 or "dlrm" not in cfg.final.baselines:
        raise ValueError(f"{args.pipeline}: the demo trains the best architecture beside DLRM: "
                         "it needs final.top >= 1 and 'dlrm' in final.baselines")
    env = init_distributed()
    t0 = time.perf_counter()
    try:
        if env.is_main:
            print(f"recnas demo: {cfg.data.synth_rows:,} synthetic Criteo rows, space {cfg.space}, "
                  f"{cfg.estimator.name} + {cfg.search.strategy} ({cfg.search.budget} candidates) -> {cfg.output}",
                  file=sys.stderr)
        try:
            result = run_search(cfg, progress=not args.no_progress, env=env)
        except JournalError as e:
            if env.world_size > 1 or "different configuration" not in str(e):
                raise
            # The demo's own folder holds a run of other settings (or of an older recnas): keep it
            # under a new name and run the demo afresh, so the built-in job always runs.
            old = Path(cfg.output).expanduser()
            kept = old.with_name(f"{old.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            old.rename(kept)
            print(f"recnas demo: {old} held a run of other settings ({e}); moved it to {kept} and "
                  "starting afresh", file=sys.stderr)
            result = run_search(cfg, progress=not args.no_progress, env=env)
        if env.is_main:
            best = result.best(1)[0]
            print()
            print(f"best architecture: {best['key']} (estimator score {best['score']:.5g}, candidate {best['index']} "
                  f"of {len(result.trials)}); exported to {result.exported[0]}")
            print(f"trained {cfg.final.epochs} epoch(s) from {cfg.final.init} on {result.run_dir / 'final'}:")
            print(format_final(result.final))
            print(f"\nreport: {result.run_dir / 'report.md'}  |  total {time.perf_counter() - t0:.0f} s")
            sys.stdout.flush()
    finally:
        shutdown_distributed()
    return 0
