"""The one-shot score with a fine-tuned head (every ``oneshot ft...`` column: ``ft100``, ``ft500``,
``ft500 fresh``) against the one-shot score without (``oneshot``), paired, at every warm-up of a
finished ``recnas bench compare`` folder that has both.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/oneshot_ft_pairs.py \\
        runs/bench_synth_oneshot_ft reports/bench_synth/oneshot_finetune/pairs.csv

Per warm-up and variant: Kendall's tau-b of each score with the truth (negated 16-seed mean test log
loss), the difference with a 95 % paired percentile bootstrap interval (1000 resamples of the
architectures, seed 0: ``benchmarks/variant_pairs.py``'s ``_paired``), the mean validation log loss
of the scored candidates (minus the mean score) and how many architectures the fine-tuning lowered it for.
A diagnostic over a finished run, not a speed benchmark: ``make bench`` does not run it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from variant_pairs import _paired  # noqa: E402


def main(folder: str, out: str) -> None:
    sc = pd.read_csv(Path(folder) / "scores.csv")
    truth = -sc["test_logloss_mean"].to_numpy(np.float64)
    rows = []
    # every warm-up the folder scored the untuned one-shot score at, in column order
    for frac in [c.removeprefix("oneshot | inherit ") for c in sc.columns if c.startswith("oneshot | inherit ")]:
        b = sc[f"oneshot | inherit {frac}"].to_numpy(np.float64)
        # every fine-tuned variant scored at this warm-up (ft100, ft500, ft500 fresh, ...), in column order
        variants = [c.split(" | ")[0] for c in sc.columns if c.startswith("oneshot ft") and c.endswith(f" | inherit {frac}")]
        for v in variants:
            x = sc[f"{v} | inherit {frac}"].to_numpy(np.float64)
            rows.append({"context": f"inherit {frac}", "variant": v, "baseline": "oneshot",
                         **_paired(x, b, truth, 1000, 0.05, 0),
                         "mean_val_logloss_variant": -x.mean(), "mean_val_logloss_baseline": -b.mean(),
                         "archs_improved": int((x > b).sum()), "archs": len(x)})
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
