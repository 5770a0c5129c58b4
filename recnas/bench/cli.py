"""``recnas bench``: the ground-truth benchmark of a search space and the estimator comparison.

    recnas bench build PIPELINE [--set k=v ...]     # train N sampled architectures x seeds
    recnas bench build PIPELINE --import reports/X  # ... taking an earlier build's rows as finished
    recnas bench compare PIPELINE [--set k=v ...]   # warm-up sweep, every estimator, report
    recnas bench compare PIPELINE --import reports/X  # ... on an earlier build's ground truth (one command)
    recnas bench sweep PIPELINE [--from DIR] [--out DIR]  # predictors' training-set-size sweep alone,
                                                    # from a finished comparison (e.g. reports/X)
    recnas bench report PIPELINE [--from DIR]       # rewrite report.md from a finished comparison's files, with
                                                    # the sweep (sweep_summary.csv) and regret/ when there
    recnas bench ceiling PIPELINE [--target 0.8]    # noise ceiling of the rows built so far, projected
                                                    # by seeds: sizes a build from a pilot, scores nothing
    recnas bench regret PIPELINE [--from DIR] [--repeats 10] [--budget N] [--strategies a,b]
                                                    # regret curves of the search strategies, the built
                                                    # architectures as a tabular oracle (reads, trains nothing)
    recnas bench diagnose PIPELINE [--from DIR]     # every score's correlation with size (tensors, params,
                                                    # FLOPs) and with the truth, and its partial correlation
                                                    # with the truth controlling for size (scores nothing)

Run from the repository root (pipelines name data relative to it, e.g. ``../shared/data/...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register"]


#: ``--from DIR`` of the commands that read a finished build or comparison: what DIR holds.
_FINISHED = "folder of a finished comparison: build.json, groundtruth.parquet or groundtruth.csv, results.csv, scores.csv"
_FROM_HELP = {
    "sweep": f"{_FINISHED} (default: the pipeline's output)",
    "report": f"{_FINISHED}; report.md is rewritten there (default: the pipeline's output)",
    "regret": "folder of the benchmark: build.json, groundtruth.parquet or groundtruth.csv, and for the "
              "estimator-driven searches scores.csv and results.csv (default: the pipeline's output)",
    "diagnose": f"{_FINISHED} (default: the pipeline's output)",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="ground-truth benchmark and estimator comparison", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    for name, help_, func in (
        ("build", "train the sampled architectures for every seed (resumable)", run_build),
        ("compare", "score the architectures with every estimator and write the report", run_compare),
        ("sweep", "judge the predictor entries by the training-set-size sweep, from a finished comparison", run_sweep),
        ("report", "rewrite report.md from a finished comparison's files (sweep and regret sections when there)",
         run_report),
        ("ceiling", "the noise ceiling of the rows built so far and its projection by seeds (sizes a build; scores nothing)",
         run_ceiling),
        ("diagnose", "every score's correlation with size and with the truth, and the partial correlation given size",
         run_diagnose),
        ("regret", "regret curves of the search strategies by tabular simulation over the built architectures",
         run_regret),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("pipeline", type=Path, help="benchmark pipeline file (pipelines/bench_*.yaml)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a pipeline key (dotted path; value parsed as YAML); repeatable")
        p.add_argument("--no-progress", action="store_true", help="no progress lines")
        if name in _FROM_HELP:
            p.add_argument("--from", dest="from_dir", type=Path, metavar="DIR", help=_FROM_HELP[name])
        if name in ("build", "compare"):
            p.add_argument("--import", dest="import_from", type=Path, metavar="DIR",
                           help="first take the rows of an earlier build of this pipeline as finished: DIR holds "
                                "its build.json and groundtruth.parquet or groundtruth.csv (e.g. a reports/ folder)"
                                + ("; compare then judges against them (trains nothing)" if name == "compare" else ""))
        if name == "compare":
            p.add_argument("--score-only", action="store_true",
                           help="compute and cache every score without the ground truth (may run beside build)")
        if name == "sweep":
            p.add_argument("--out", type=Path, metavar="DIR",
                           help="where sweep.csv, sweep_summary.csv, sweep.md and the plot go (default: --from)")
        if name == "ceiling":
            p.add_argument("--target", type=float, default=0.8, help="Kendall the truth's ceiling should reach (default 0.8)")
            p.add_argument("--archs", type=int, default=None, help="architectures of the full build (default: num_archs)")
            p.add_argument("--max-seeds", type=int, default=8, help="largest seeds-per-truth projected (default 8)")
        if name == "regret":
            from recnas.bench.regret import DEFAULT_STRATEGIES

            p.add_argument("--out", type=Path, metavar="DIR", help="where the regret files go (default: DIR/regret)")
            p.add_argument("--repeats", type=int, default=10, help="runs per strategy, seeds SEED.. (default 10)")
            p.add_argument("--seed", type=int, default=0, help="first strategy seed (default 0)")
            p.add_argument("--budget", type=int, default=None, help="ground-truth queries per run (default: the table size)")
            p.add_argument("--proxy-budget", type=int, default=None,
                           help="distinct architectures an estimator-driven search scores before it trains them "
                                "(default: half the table)")
            p.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                           help=f"comma-separated (default {','.join(DEFAULT_STRATEGIES)})")
            p.add_argument("--threads", type=int, default=1, help="torch threads for the predictors (default 1)")
            p.add_argument("--workers", type=int, default=1,
                           help="processes for the repeats (default 1); the rows do not depend on it, timings aside")
        if name == "diagnose":
            p.add_argument("--out", type=Path, metavar="DIR",
                           help="where diagnose.csv, diagnose.md and the plot go (default: DIR/diagnose)")
        p.set_defaults(func=func)


def run_build(args: argparse.Namespace) -> int:
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.bench.config import load_bench
    from recnas.bench.groundtruth import TABLE_FILE, build, import_rows

    cfg = load_bench(args.pipeline, args.overrides)
    if args.import_from is not None:
        n = import_rows(cfg, args.import_from, source=str(args.pipeline))
        print(f"recnas bench build: imported {n} rows from {args.import_from}", file=sys.stderr)
    df = build(cfg, source=str(args.pipeline), progress=not args.no_progress)
    print(f"recnas bench build: {len(df)} rows in {Path(cfg.output) / TABLE_FILE}")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.bench.compare import run_compare as compare
    from recnas.bench.config import load_bench

    cfg = load_bench(args.pipeline, args.overrides)
    if args.import_from is not None:
        from recnas.bench.groundtruth import import_rows

        n = import_rows(cfg, args.import_from, source=str(args.pipeline))
        print(f"recnas bench compare: imported {n} rows from {args.import_from}", file=sys.stderr)
    report = compare(cfg, source=str(args.pipeline), progress=not args.no_progress, score_only=args.score_only)
    if report is None:
        print(f"recnas bench compare: scores cached in {Path(cfg.output) / 'scores'}", file=sys.stderr)
        return 0
    print(report)
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.bench.compare import run_sweep as sweep
    from recnas.bench.config import load_bench

    cfg = load_bench(args.pipeline, args.overrides)
    print(sweep(cfg, source=str(args.pipeline), from_dir=args.from_dir, out=args.out, progress=not args.no_progress))
    return 0


def run_report(args: argparse.Namespace) -> int:
    from recnas.bench.compare import run_report as report
    from recnas.bench.config import load_bench

    cfg = load_bench(args.pipeline, args.overrides)
    print(report(cfg, source=str(args.pipeline), from_dir=args.from_dir))
    return 0


def run_ceiling(args: argparse.Namespace) -> int:
    from recnas.bench.ceiling import ceiling_report
    from recnas.bench.config import load_bench

    cfg = load_bench(args.pipeline, args.overrides)
    print(ceiling_report(cfg, target=args.target, n_archs=args.archs, max_seeds=args.max_seeds, source=str(args.pipeline)))
    return 0


def run_diagnose(args: argparse.Namespace) -> int:
    from recnas.bench.config import load_bench
    from recnas.bench.diagnose import run_diagnose as diagnose

    cfg = load_bench(args.pipeline, args.overrides)
    md = diagnose(cfg, source=str(args.pipeline), from_dir=args.from_dir, out=args.out, progress=not args.no_progress)
    print(f"recnas bench diagnose: {md}")
    return 0


def run_regret(args: argparse.Namespace) -> int:
    import time

    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    import torch

    from recnas.bench.config import load_bench
    from recnas.bench.regret import load_table, run_regret, write_regret

    torch.set_num_threads(max(1, args.threads))
    cfg = load_bench(args.pipeline, args.overrides)
    src = Path(args.from_dir if args.from_dir is not None else cfg.output)
    out = args.out if args.out is not None else src / "regret"
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    table = load_table(cfg, src, source=str(args.pipeline))
    n = len(table.specs)
    budget = min(args.budget or n, n)
    proxy_budget = args.proxy_budget or max(1, n // 2)
    t0 = time.perf_counter()
    rows, runs = run_regret(table, strategies, repeats=args.repeats, seed=args.seed, budget=budget,
                            proxy_budget=proxy_budget, progress=not args.no_progress, workers=args.workers)
    command = " ".join(["recnas bench regret", str(args.pipeline)] + (["--from", str(args.from_dir)] if args.from_dir else [])
                       + (["--out", str(args.out)] if args.out else []) + [f"--repeats {args.repeats}"]
                       + ([f"--seed {args.seed}"] if args.seed else []) + [f"--budget {budget}"]
                       + [f"--proxy-budget {proxy_budget}", f"--strategies {','.join(strategies)}"])
    md = write_regret(out, table, rows, runs, budget=budget, repeats=args.repeats, seed=args.seed,
                      proxy_budget=proxy_budget, strategies=strategies, command=command,
                      seconds=time.perf_counter() - t0)
    print(md.read_text())
    return 0
