"""``recnas export RUN_DIR --top K --out DIR``: the best architectures of a search run as exports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["register", "run_export"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export the best architectures of a search run as standalone models",
        description=__doc__,
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a `recnas search` run folder (journal.jsonl, supernet)")
    p.add_argument("--top", type=int, default=1, metavar="K", help="how many distinct architectures (default 1)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default RUN_DIR/export)")
    p.add_argument("--force", action="store_true",
                   help="write even when the estimated size exceeds the free disk space")  # fmt: skip
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    if not (args.run_dir / "journal.jsonl").is_file():  # before the heavy imports
        raise FileNotFoundError(f"{args.run_dir} is not a search run folder: {args.run_dir / 'journal.jsonl'} is missing")
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.export.run import export_run

    out = args.out if args.out is not None else args.run_dir / "export"
    paths = export_run(args.run_dir, args.top, out, force=args.force)
    written = json.loads((out / "index.json").read_text())
    index = written["exports"]
    print(f"{'rank':>4}  {'key':<16}  {'score':>12}  {'retrain test logloss':>20}  {'params':>12}  {'MFLOPs/ex':>9}  folder")
    for e in index:
        rt = e["retrain"]["test_logloss"] if e["retrain"] else None
        print(f"{e['rank']:>4}  {e['key']:<16}  {e['score']:>12.6g}  {('-' if rt is None else f'{rt:.5f}'):>20}  "
              f"{e['num_params']:>12,}  {e['flops_per_example'] / 1e6:>9.3f}  {out / e['folder']}")
    for t in written.get("twins_skipped", []):
        print(f"skipped {t['key']} (score {t['score']:.6g}): the same model as {t['twin_of']} "
              "(its spec differs only in choices that do not reach the output)")
    if len(paths) < args.top:
        print(f"(the run has only {len(paths)} distinct scored model(s))")
    return 0
