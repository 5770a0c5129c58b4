"""Issue 18's ZiCo / SiGeo variants against their baselines, paired, on one or more finished comparisons.

For every (variant, baseline) pair of :data:`PAIRS` (the plan in ``reports/bench_synth/variants/NOTES.md``,
fixed before any variant was scored) and every context both were scored in (fresh, inherited at
each warm-up), on each benchmark folder given (a ``recnas bench compare`` output: ``scores.csv``
with the per-seed test log losses and one column per score vector): Kendall's tau-b of each with the
truth (negated seed-mean test log loss, higher = better, as in the report), their difference, and a
paired percentile bootstrap interval of the difference (architectures resampled, the same resamples
for both scores; :func:`recnas.bench.stats.bootstrap_ci`). Also each variant against ``params`` and
``oneshot`` at the same warm-up.

    .venv/bin/python benchmarks/variant_pairs.py --bench bench_synth=runs/bench_synth_variants \\
        --bench bench_criteo_real=runs/bench_criteo_real_variants --out reports/bench_synth/variants

Writes ``pairs.csv`` (one row per benchmark x pair x context) and ``pairs.md`` (the issue's rule: a
variant counts only if its difference is positive on every benchmark given). A diagnostic over
finished runs, not a speed benchmark: ``make bench`` does not run it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

#: (variant label, baseline label) -- the plan's table
PAIRS: list[tuple[str, str]] = [
    ("zico linear", "zico"),
    ("zico mean", "zico"),
    ("zico per_layer", "zico"),
    ("zico linear mean", "zico"),
    ("sigeo mean", "sigeo"),
    ("sigeo linear mean", "sigeo"),
    ("sigeo paper mean", "sigeo paper"),
    ("sigeo paper linear mean", "sigeo paper"),
    ("heldout loss", "sigeo[l3 (-loss); emb=none]"),
    ("sigeo paper heldout", "sigeo paper"),
    ("sigeo paper linear mean heldout", "sigeo paper"),
    ("sigeo paper k4", "sigeo paper"),
    ("zico k4 linear mean", "zico"),
    ("heldout loss k4", "heldout loss"),
    ("sigeo paper k4 linear mean heldout", "sigeo paper"),
]
REFERENCES = ("params | none", "oneshot")


def _paired(v: np.ndarray, b: np.ndarray, truth: np.ndarray, n_boot: int, alpha: float, seed: int) -> dict:
    from recnas.bench import stats

    idx = np.arange(truth.size, dtype=np.float64)

    def diff(a: np.ndarray, _b: np.ndarray) -> float:
        i = a.astype(np.intp)
        return stats.kendall(v[i], truth[i]) - stats.kendall(b[i], truth[i])

    lo, hi = stats.bootstrap_ci(diff, idx, idx, n_boot=n_boot, alpha=alpha, seed=seed)
    return {"kendall_variant": stats.kendall(v, truth), "kendall_baseline": stats.kendall(b, truth),
            "diff": diff(idx, idx), "diff_lo": lo, "diff_hi": hi}


def pairs_table(name: str, folder: Path, n_boot: int, alpha: float, seed: int) -> pd.DataFrame:
    sc = pd.read_csv(folder / "scores.csv")
    truth = -sc["test_logloss_mean"].to_numpy(np.float64)
    rows = []
    for variant, baseline in PAIRS:
        for col in sc.columns:
            if not col.startswith(f"{variant} | "):
                continue
            ctx = col.split(" | ", 1)[1]
            base = f"{baseline} | {ctx}"
            if base not in sc:
                continue
            v = sc[col].to_numpy(np.float64)
            row = {"bench": name, "variant": variant, "baseline": baseline, "context": ctx,
                   **_paired(v, sc[base].to_numpy(np.float64), truth, n_boot, alpha, seed)}
            for ref in REFERENCES:
                rc = ref if ref in sc else f"{ref} | {ctx}"
                if rc in sc:
                    short = ref.split(" |")[0]
                    p = _paired(v, sc[rc].to_numpy(np.float64), truth, n_boot, alpha, seed)
                    row[f"diff_vs_{short}"], row[f"diff_vs_{short}_lo"], row[f"diff_vs_{short}_hi"] = (
                        p["diff"], p["diff_lo"], p["diff_hi"])
            rows.append(row)
    return pd.DataFrame(rows)


def _f(x: float) -> str:
    return "--" if x is None or not np.isfinite(x) else f"{x:+.3f}"


def markdown(df: pd.DataFrame, benches: list[str], alpha: float, n_boot: int, command: str) -> str:
    lines = ["# Variants against their baselines (paired Kendall differences)", "",
             f"`{command}`", "",
             f"Each cell: Kendall(variant, truth) - Kendall(baseline, truth) [{(1 - alpha) * 100:g} % paired "
             f"percentile bootstrap interval, {n_boot} resamples of the architectures]. Truth: negated seed-mean "
             "test log loss. `wins on all` -- the issue's rule: the difference is positive on every benchmark "
             "(a point estimate; an interval that excludes 0 on both is marked `**`).", ""]
    contexts = list(dict.fromkeys(df["context"]))
    for ctx in contexts:
        sub = df[df["context"] == ctx]
        lines += [f"## {ctx}", "",
                  "| variant | baseline | " + " | ".join(f"{b}: variant / baseline Kendall, diff" for b in benches)
                  + " | wins on all | " + " | ".join(f"{b}: vs params, vs oneshot" for b in benches) + " |",
                  "|---|---|" + "---|" * (2 * len(benches) + 1)]
        for (variant, baseline), g in sub.groupby(["variant", "baseline"], sort=False):
            cells, wins, sure, refs = [], True, True, []
            for b in benches:
                r = g[g["bench"] == b]
                if r.empty:
                    cells.append("--")
                    refs.append("--")
                    wins = sure = False
                    continue
                r = r.iloc[0]
                cells.append(f"{r['kendall_variant']:+.3f} / {r['kendall_baseline']:+.3f}, "
                             f"{_f(r['diff'])} [{_f(r['diff_lo'])}, {_f(r['diff_hi'])}]")
                wins &= bool(r["diff"] > 0)
                sure &= bool(r["diff_lo"] > 0)
                refs.append(", ".join(_f(r.get(f"diff_vs_{k}", np.nan)) for k in ("params", "oneshot")))
            verdict = ("**yes**" if sure else "yes") if wins else "no"
            lines.append(f"| {variant} | {baseline} | " + " | ".join(cells) + f" | {verdict} | " + " | ".join(refs) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", action="append", required=True, metavar="NAME=DIR",
                    help="a finished comparison folder (scores.csv), repeatable")
    ap.add_argument("--out", type=Path, required=True, help="where pairs.csv and pairs.md go")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tables, names = [], []
    for item in args.bench:
        name, _, folder = item.partition("=")
        if not folder or not (Path(folder) / "scores.csv").is_file():
            ap.error(f"--bench {item}: expected NAME=DIR with DIR/scores.csv")
        names.append(name)
        tables.append(pairs_table(name, Path(folder), args.n_boot, args.alpha, args.seed))
    df = pd.concat(tables, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "pairs.csv", index=False)
    command = "python benchmarks/variant_pairs.py " + " ".join(f"--bench {b}" for b in args.bench) + f" --out {args.out}"
    (args.out / "pairs.md").write_text(markdown(df, names, args.alpha, args.n_boot, command))
    print(args.out / "pairs.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
