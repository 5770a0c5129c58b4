"""benchmarks/default_rule.py in a subprocess: the pre-registered rule that picks `recnas search`'s default
estimator from finished `recnas bench compare` folders (results.csv with kendall_frac per label)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "default_rule.py"


def _results(folder: Path, rows: list[tuple[str, str, float | None, float]], sub: str = "") -> None:
    """rows: (label, init, fraction, kendall_frac); written as a compare results.csv."""
    d = folder / sub
    d.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"label": lab, "estimator": lab.split(" | ")[0], "kind": "estimator", "init": init,
                   "fraction": frac, "kendall_frac": kf, "seconds_per_arch": 0.1}
                  for lab, init, frac, kf in rows]).to_csv(d / "results.csv", index=False)


def _run(tmp: Path, *benches: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp / "out"
    args = [sys.executable, str(SCRIPT)]
    for b in benches:
        args += ["--bench", b]
    return subprocess.run(args + ["--out", str(out)], capture_output=True, text=True), out


def test_winner_is_the_best_mean_at_each_headline_warmup_and_expensive_tier_is_not_eligible(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    # at 10 % on a and 20 % on b: zico averages 0.45, params 0.3; zico at the other warm-up would lose
    _results(a, [("params | none", "none", None, 0.2), ("zico | inherit 10%", "inherit", 0.1, 0.5),
                 ("zico | inherit 20%", "inherit", 0.2, -0.9), ("sigeo_paper | fresh", "fresh", None, 0.1)])
    _results(b, [("params | none", "none", None, 0.4), ("zico | inherit 20%", "inherit", 0.2, 0.4),
                 ("zico | inherit 10%", "inherit", 0.1, -0.9), ("sigeo paper | fresh", "fresh", None, 0.3)])
    # the fine-tuned one-shot score is the best of all but outside the equal-cost tier
    _results(a, [("oneshot ft500 fresh | inherit 10%", "inherit", 0.1, 0.9)], sub="oneshot_finetune")
    _results(b, [("oneshot ft500 fresh | inherit 20%", "inherit", 0.2, 0.9)], sub="oneshot_finetune")
    p, out = _run(tmp_path, f"a={a}:0.1", f"b={b}:0.2")
    assert p.returncode == 0, p.stderr
    assert "zico | inherit (0.450) beats params (0.300)" in p.stdout
    df = pd.read_csv(out / "standings.csv").set_index("entry")
    assert df.at["oneshot ft500 fresh | inherit", "mean"] == 0.9
    assert not df.at["oneshot ft500 fresh | inherit", "eligible"]
    # "sigeo_paper" and "sigeo paper" are one estimator across the two files
    assert abs(df.at["sigeo paper | fresh", "mean"] - 0.2) < 1e-12
    assert "**Verdict: zico | inherit (0.450) beats params (0.300).**" in (out / "standings.md").read_text()


def test_params_stays_the_default_when_nothing_eligible_beats_it(tmp_path: Path) -> None:
    a = tmp_path / "a"
    _results(a, [("params | none", "none", None, 0.6), ("zico | fresh", "fresh", None, 0.59)])
    _results(a, [("oneshot ft500 fresh | inherit 10%", "inherit", 0.1, 0.9)], sub="oneshot_finetune")
    p, _ = _run(tmp_path, f"a={a}:0.1")
    assert p.returncode == 0, p.stderr
    assert "no eligible estimator beats params (0.600); the default is params" in p.stdout


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    p, _ = _run(tmp_path, f"a={tmp_path / 'nowhere'}:0.1")
    assert p.returncode != 0 and "nowhere/results.csv not found" in p.stderr
    p, _ = _run(tmp_path, "a-without-fraction")
    assert p.returncode != 0 and "is not NAME=FOLDER:FRACTION" in p.stderr
    a = tmp_path / "a"
    _results(a, [("zico | fresh", "fresh", None, 0.5)])
    p, _ = _run(tmp_path, f"a={a}:0.1")
    assert p.returncode != 0 and "`params | none` is missing" in p.stderr
