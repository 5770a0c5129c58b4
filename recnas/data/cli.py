"""``recnas data {prepare,synth,stats}``: the data pipeline's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from recnas.data.formats import FORMATS

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="prepare CTR datasets (Criteo, Criteo 1TB, Avazu) and synthesise data")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    pp = sub.add_parser(
        "prepare",
        help="raw Criteo / Criteo 1TB / Avazu files -> parquet splits + feature_map.json + stats.json",
        description="Prepare raw CTR files into DIR/{train,valid,test}/part-*.parquet, "
        "DIR/feature_map.json and DIR/stats.json (streaming, bounded memory).",
    )
    pp.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    pp.add_argument("--input", required=True, nargs="+", metavar="PATH", help="raw files (.gz read transparently)")
    pp.add_argument("--out", required=True, metavar="DIR", help="output dataset folder")
    enc = pp.add_mutually_exclusive_group()
    enc.add_argument("--min-count", type=int, help="vocabulary of values seen >= N times in train (BARS); default 10")
    enc.add_argument("--hash-size", type=int, help="hash categories into N ids per feature (NASRec)")
    enc.add_argument("--encode-like", metavar="DIR", help="reuse the encoding of a prepared dataset")
    pp.add_argument("--dense-transform", default="log1p", choices=("log1p", "log2sq_bucket", "none"))
    pp.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VALID", "TEST"))
    pp.add_argument("--split-by", choices=("row", "day"), default="row",
                    help="row: seeded random rows; day: the last input file is held out as valid/test")  # fmt: skip
    pp.add_argument("--seed", type=int, default=2018, help="split seed (default 2018, as NASRec)")
    pp.add_argument("--on-bad-row", choices=("error", "skip"), default="error",
                    help="error: stop naming file and line (default); skip: count by reason in stats.json")  # fmt: skip
    pp.add_argument("--overwrite", action="store_true", help="replace a dataset already prepared in --out")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
    pp.set_defaults(func=_prepare)

    ps = sub.add_parser(
        "synth",
        help="write a synthetic raw file labelled by a hidden teacher CTR model",
        description="Write N synthetic rows in the raw Criteo (train.txt) or Avazu (train.csv) layout; "
        "labels come from a hidden teacher with first-order, pairwise and higher-order effects "
        "(--teacher v2 adds dense x categorical, cross-product and deep terms; see data/README.md).",
    )
    ps.add_argument("--format", required=True, choices=("criteo", "avazu"))
    ps.add_argument("--rows", required=True, type=int)
    ps.add_argument("--out", required=True, metavar="FILE", help="output file (.gz to compress)")
    ps.add_argument("--like", metavar="SAMPLE", help="raw sample whose marginals and label rate are fitted")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--interaction-rows", type=int, default=1000, metavar="K",
                    help="the teacher's interaction vocabulary: each field's K most frequent values carry "
                         "their own interaction embedding (default 1000; fewer = learnable from fewer rows)")
    ps.add_argument("--teacher", choices=("v1", "v2"), default="v1",
                    help="the teacher's version: v1 (default) first-order, pairwise and higher-order terms; "
                         "v2 adds dense x categorical, cross-product and deep-MLP terms (data/README.md)")
    ps.add_argument("--quiet", action="store_true")
    ps.set_defaults(func=_synth)

    pt = sub.add_parser("stats", help="print a prepared dataset's statistics")
    pt.add_argument("dir", metavar="DIR")
    pt.add_argument("--json", action="store_true", help="print stats.json as it is")
    pt.set_defaults(func=_stats)


def _prepare(args: argparse.Namespace) -> int:
    from recnas.data.prepare import prepare

    stats = prepare(
        args.format,
        args.input,
        args.out,
        min_count=args.min_count,
        hash_size=args.hash_size,
        encode_like=args.encode_like,
        dense_transform=args.dense_transform,
        split=tuple(args.split),
        split_by=args.split_by,
        seed=args.seed,
        on_bad_row=args.on_bad_row,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(format_stats(stats, args.out))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from recnas.data.synth import synth

    out = synth(args.format, args.rows, args.out, like=args.like, seed=args.seed,
                interaction_rows=args.interaction_rows, teacher=args.teacher, progress=not args.quiet)
    print(f"wrote {args.rows:,} synthetic {args.format} rows to {out}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from recnas.data.feature_map import FeatureMap
    from recnas.data.prepare import STATS_FILE

    d = Path(args.dir)
    fm = FeatureMap.load(d)
    f = d / STATS_FILE
    if not f.exists():
        raise FileNotFoundError(f"{f} not found (an interrupted `recnas data prepare`?)")
    stats = json.loads(f.read_text())
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(format_stats(stats, d))
    enc = fm.meta.get("encoding")
    detail = f"hash_size={fm.meta.get('hash_size')}" if enc == "hash" else f"min_count={fm.meta.get('min_count')}"
    print(f"features: {fm.num_dense} dense ({', '.join(sorted({f.transform for f in fm.dense})) or '-'}), "
          f"{fm.num_sparse} sparse ({enc}, {detail})")  # fmt: skip
    return 0


def format_stats(stats: dict, out: str | Path) -> str:
    """A short human-readable table of a ``stats.json`` dict."""
    lines = [f"{out}: {stats['rows_read']:,} rows read, {stats['rows_skipped_total']:,} skipped"]
    for reason, n in stats["rows_skipped"].items():
        if n:
            lines.append(f"  skipped {reason:<16} {n:>12,}")
    lines.append(f"  {'split':<8} {'rows':>12} {'label rate':>11}")
    for split, n in stats["rows_written"].items():
        rate = stats["label_rate"].get(split)
        lines.append(f"  {split:<8} {n:>12,} {'-' if rate is None else f'{rate:.4f}':>11}")
    emb = stats.get("num_embeddings", {})
    if emb:
        sizes = ", ".join(f"{k}={v:,}" for k, v in list(emb.items())[:6])
        more = f", ... ({len(emb)} features, {sum(emb.values()):,} ids in all)" if len(emb) > 6 else ""
        lines.append(f"  num_embeddings: {sizes}{more}")
    if "seconds" in stats:
        lines.append(f"  {stats['seconds']:.2f} s, {stats['rows_per_s']:,.0f} rows/s")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: recnas data ...")
