"""Issue 18's pre-registered rule for the default estimator of ``recnas search``, computed from finished comparisons.

The rule (``reports/bench_ctr/interim_82/NOTES.md``, "How the search default will be chosen", written
before the complete bench_ctr build was read):

1. **Score**: each estimator's Kendall divided by its benchmark's quoted noise ceiling (the
   ``kendall_frac`` column of ``recnas bench compare``'s ``results.csv``), averaged over the benchmarks
   given, each read at its headline warm-up (``bench_synth`` and ``bench_criteo_real`` at 10 %,
   ``bench_ctr`` at 20 %). Fresh-weight and weight-free scores enter once, as their own entries.
2. **Equal cost**: the default is chosen among the estimators costing at most ~10x SiGeo per candidate:
   every zero-cost proxy, ``params``, ``flops``, SiGeo and its variants and ablations, the untuned
   one-shot score. The one-shot score fine-tuned on fresh rows (``oneshot ft500 fresh``, ~55x) and the
   predictors (which need trained ground truth) are reported beside it, not eligible.
3. The winner must beat ``params`` on that average, or the default is ``params``.

    .venv/bin/python benchmarks/default_rule.py \\
        --bench bench_synth=reports/bench_synth:0.1 \\
        --bench bench_criteo_real=reports/bench_criteo_real:0.1 \\
        --bench bench_ctr=reports/bench_ctr:0.2 --out reports/bench_ctr/default_rule

Each ``--bench NAME=FOLDER:FRACTION`` reads ``FOLDER/results.csv`` and, where present,
``FOLDER/variants/results.csv`` and ``FOLDER/oneshot_finetune/results.csv``. Writes ``standings.csv``
(one row per entry: its Kendall/ceiling on each benchmark, the mean, the measured seconds per
candidate on the last benchmark, eligibility) and ``standings.md`` (the rule's verdict). A summary
over finished runs, not a speed benchmark: ``make bench`` does not run it.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

#: labels (normalised, see :func:`_key`) outside the rule's equal-cost tier
EXPENSIVE = ("oneshot ft100", "oneshot ft500", "oneshot ft500 fresh")


def _key(label: str) -> str:
    """``"sigeo_paper | inherit 20%"`` -> ``"sigeo paper"``: the same estimator across benchmarks."""
    return label.split(" | ")[0].replace("_", " ").strip()


def _read(folder: Path, fraction: float) -> pd.DataFrame:
    frames = []
    for sub in ("", "variants", "oneshot_finetune"):
        path = folder / sub / "results.csv"
        if not path.is_file():
            if sub == "":
                raise SystemExit(f"default_rule: {path} not found (a `recnas bench compare` output folder)")
            continue
        df = pd.read_csv(path)
        missing = {"label", "init", "fraction", "kind", "kendall_frac", "seconds_per_arch"} - set(df.columns)
        if missing:
            raise SystemExit(f"default_rule: {path} lacks columns {sorted(missing)}")
        keep = (df["init"] != "inherit") | (df["fraction"].sub(fraction).abs() < 1e-9)
        df = df[keep & df["kind"].isin(["estimator", "sigeo_ablation"])].copy()
        df["source"] = sub or "main"
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    out["entry"] = [f"{_key(lab)} | {init}" for lab, init in zip(out["label"], out["init"].astype(str))]
    # the same entry may appear in the main and the variants comparison (same scores, same truth): first wins
    return out.drop_duplicates("entry", keep="first").set_index("entry")


def standings(benches: list[tuple[str, Path, float]]) -> pd.DataFrame:
    tables = {name: _read(folder, frac) for name, folder, frac in benches}
    entries = sorted(set.intersection(*(set(t.index) for t in tables.values())))
    last = benches[-1][0]
    rows = []
    for e in entries:
        row = {"entry": e}
        for name, t in tables.items():
            row[name] = float(t.at[e, "kendall_frac"])
        vals = [row[name] for name in tables]
        row["mean"] = sum(vals) / len(vals) if all(math.isfinite(v) for v in vals) else float("nan")
        row[f"seconds_per_arch_{last}"] = float(tables[last].at[e, "seconds_per_arch"])
        row["eligible"] = e.split(" | ")[0] not in EXPENSIVE
        rows.append(row)
    return pd.DataFrame(rows).sort_values("mean", ascending=False, na_position="last").reset_index(drop=True)


def verdict(df: pd.DataFrame) -> tuple[str, str]:
    ok = df[df["eligible"] & df["mean"].notna()]
    params = ok[ok["entry"] == "params | none"]
    if params.empty:
        raise SystemExit("default_rule: `params | none` is missing from a benchmark; the rule needs it")
    best = ok.iloc[0]
    p = float(params["mean"].iloc[0])
    if best["entry"] == "params | none" or best["mean"] <= p:
        return "params | none", f"no eligible estimator beats params ({p:.3f}); the default is params"
    return str(best["entry"]), f"{best['entry']} ({best['mean']:.3f}) beats params ({p:.3f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", action="append", required=True, metavar="NAME=FOLDER:FRACTION")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    benches = []
    for spec in args.bench:
        try:
            name, rest = spec.split("=", 1)
            folder, frac = rest.rsplit(":", 1)
            benches.append((name, Path(folder), float(frac)))
        except ValueError:
            raise SystemExit(f"default_rule: --bench {spec!r} is not NAME=FOLDER:FRACTION") from None
    df = standings(benches)
    winner, why = verdict(df)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "standings.csv", index=False)
    names = [b[0] for b in benches]
    last = names[-1]
    lines = ["# Default-estimator rule: standings", "",
             "Kendall / noise ceiling per benchmark (" + ", ".join(f"{n} at {f:.0%} warm-up" for n, _, f in benches)
             + "), averaged. Eligible = the rule's equal-cost tier. Computed by `benchmarks/default_rule.py`.", "",
             f"**Verdict: {why}.**", "",
             "| entry | " + " | ".join(names) + f" | mean | s/candidate ({last}) | eligible |",
             "|---|" + "---:|" * (len(names) + 2) + "---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r['entry']} | " + " | ".join(f"{r[n]:+.3f}" for n in names)
                     + f" | {r['mean']:+.3f} | {r[f'seconds_per_arch_{last}']:.3f} | {'yes' if r['eligible'] else 'no'} |")
    (args.out / "standings.md").write_text("\n".join(lines) + "\n")
    print(f"default_rule: {why}; wrote {args.out / 'standings.md'}")


if __name__ == "__main__":
    main()
