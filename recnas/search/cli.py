"""``recnas search PIPELINE.yaml [--set key=value ...] [--resume]``: search a space for the best architectures.

Runs as one process or under ``torchrun --nproc-per-node N -m recnas search ...`` (same search; the
warm-up shards the tables, the scoring is split across ranks, rank 0 writes the run folder).
Rerunning into the same output folder continues a killed search from its journal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("search", help="search a space for the best architectures (a pipeline file)",
                              description=__doc__)
    p.add_argument("pipeline", type=Path, help="pipeline YAML file (see pipelines/search_*.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a pipeline key, e.g. --set search.budget=64 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder (an error if there is none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or stage messages")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per process for the whole search: warm-up, scoring, "
                        "retraining (default: torch's; 1 is fastest for small candidates on a busy machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from recnas.train.cli import quiet_libraries, set_threads

    quiet_libraries()
    set_threads(args.threads)
    from recnas.search.config import load_pipeline
    from recnas.search.runner import run_search
    from recnas.train.distributed import init_distributed, shutdown_distributed
    from recnas.train.loop import NonFiniteLossError

    cfg = load_pipeline(args.pipeline, args.overrides)
    env = init_distributed()
    try:
        try:
            result = run_search(cfg, resume=args.resume, progress=not args.no_progress, env=env)
        except NonFiniteLossError as e:
            if env.is_main:
                print(f"recnas search: error: {e} (supernet.lr / supernet.on_nan in {args.pipeline})",
                      file=sys.stderr)
            return 3
        if env.is_main:
            print(f"run folder: {result.run_dir}")
            for i, t in enumerate(result.best(min(cfg.top_k, 5)), start=1):
                print(f"  #{i} {t['key']} score {t['score']:.6g} (candidate {t['index']})")
            sys.stdout.flush()
    finally:
        shutdown_distributed()
    return 0
