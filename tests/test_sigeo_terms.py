"""``recnas bench report``'s section "SiGeo terms against warm-up rows" and its PNG.

Fast: no training, no scoring. A committed-style comparison folder (build.json, groundtruth.csv,
results.csv judged by the bench's own ``judge``, scores.csv, ceiling.csv, warmup.csv) is written
here for the tiny space, 12 architectures x 2 seeds, with invented log losses and score vectors;
the report is rewritten from it by the CLI.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchkit import tiny_bench_pipeline

from recnas.bench import stats
from recnas.bench.sigeo_terms import SIGEO_TERMS_PLOT, warmup_rows

HEADING = "## SiGeo terms against warm-up rows (the paper's study)"
FRACTIONS = [0.5, 0.0, 0.25]  # out of order on purpose: the columns must come out by rows
STEPS = {0.5: 10, 0.0: 0, 0.25: 5}
BATCH = 32
TERMS = ("l1 (ZiCo)", "l2 (Fisher-Rao)", "l3 (-loss)", "paper (1,50,1)")


def _folder(tmp: Path, with_ablation: bool = True) -> tuple[Path, Path, dict[str, np.ndarray], np.ndarray]:
    """A finished comparison's folder; returns (pipeline, folder, score vectors, truth (n, seeds))."""
    from recnas.bench.compare import ScoreSet, ceiling_table, judge
    from recnas.bench.config import build_signature, load_bench
    from recnas.bench.groundtruth import sample_archs
    from recnas.space import SearchSpace

    tmp.mkdir(parents=True, exist_ok=True)
    pipe = tiny_bench_pipeline(tmp, "cmp", tmp / "cache", num_archs=12, n_boot=40,
                               warmup={"fractions": FRACTIONS, "batch_size": BATCH})
    cfg = load_bench(pipe)
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    n = len(specs)
    rng = np.random.default_rng(0)
    quality = rng.normal(size=n)
    truth = 0.48 - 0.001 * (quality[:, None] + 0.3 * rng.normal(size=(n, 2)))
    folder = tmp / "committed"
    folder.mkdir()
    (folder / "build.json").write_text(json.dumps(build_signature(cfg), indent=2))
    rows = [{"arch": i, "key": s.key(), "spec": s.to_json(), "seed": seed, "test_logloss": truth[i, j],
             "test_auc": 0.7, "train_seconds": 1.0}
            for i, s in enumerate(specs) for j, seed in enumerate(cfg.train.seeds)]
    pd.DataFrame(rows).to_csv(folder / "groundtruth.csv", index=False)

    sets: list[ScoreSet] = []

    def add(label: str, estimator: str, kind: str, init: str, frac: float, noise: float, emb: str = "") -> None:
        sets.append(ScoreSet(label, estimator, kind, init, frac, quality + noise * rng.normal(size=n), 1.0, emb))

    contexts = [("inherit", f, f"inherit {100 * f:g}%") for f in FRACTIONS] + [("fresh", float("nan"), "fresh")]
    for init, f, ctx in contexts:
        add(f"sigeo | {ctx}", "sigeo", "estimator", init, f, 0.8)
        if init == "inherit":
            add(f"oneshot | {ctx}", "oneshot", "estimator", init, f, 0.5)
        if with_ablation:
            for emb in ("none", "rows"):
                for k, term in enumerate(TERMS):
                    add(f"sigeo[{term}; emb={emb}] | {ctx}", f"sigeo {term}", "sigeo_ablation", init, f,
                        0.3 + 0.2 * k, emb)
    add("params | none", "params", "estimator", "none", float("nan"), 1.0)
    ceilings = ceiling_table(truth, cfg)
    judge(sets, truth, cfg, ceilings).to_csv(folder / "results.csv", index=False)
    ceilings.to_csv(folder / "ceiling.csv", index=False)
    scores = pd.DataFrame({"arch": range(n), "key": [s.key() for s in specs]})
    vectors = {x.label: x.scores for x in sets}
    pd.concat([scores, pd.DataFrame(vectors)], axis=1).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame({"fraction": FRACTIONS, "seconds": [1.0, 0.0, 0.5], "steps": [STEPS[f] for f in FRACTIONS]}
                 ).to_csv(folder / "warmup.csv", index=False)
    return pipe, folder, vectors, truth


def _report(pipe: Path, folder: Path, *sets: str) -> str:
    from recnas.cli import main

    args = ["bench", "report", str(pipe), "--from", str(folder)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    return (folder / "report.md").read_text()


def _section(text: str) -> str:
    i = text.index(HEADING)
    return text[i:text.index("\n## ", i + 1)]


def _table(section: str, after: str) -> tuple[list[str], dict[str, list[str]]]:
    """The markdown table following the line ``after``: header cells, and row name -> cells."""
    lines = section[section.index(after):].splitlines()
    end = next((i for i, ln in enumerate(lines) if ln.startswith("|")), 0)
    rows = []
    for ln in lines[end:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows[0], {r[0]: r[1:] for r in rows[2:]}


_CELL = re.compile(r"^(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]$")


def test_section_and_png_follow_the_ablation_rows(tmp_path: Path) -> None:
    pipe, folder, _, _ = _folder(tmp_path / "with")
    text = _report(pipe, folder)
    assert text.count(HEADING) == 1
    order = [text.index(h) for h in ("## SiGeo ablation", HEADING, "## Every row at every warm-up")]
    assert order == sorted(order)
    assert f"![SiGeo's terms against warm-up rows]({SIGEO_TERMS_PLOT})" in text
    assert (folder / SIGEO_TERMS_PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Spearman (the paper's statistic)" in _section(text) and "0.30 at 0 %" in _section(text)

    pipe, folder, _, _ = _folder(tmp_path / "without", with_ablation=False)
    text = _report(pipe, folder)
    assert HEADING not in text and "## SiGeo ablation" in text
    assert not (folder / SIGEO_TERMS_PLOT).exists()


def test_columns_are_warmup_rows_in_increasing_order_and_cells_are_the_bootstrap_intervals(tmp_path: Path) -> None:
    from recnas.bench.config import load_bench

    pipe, folder, vectors, truth = _folder(tmp_path)
    section = _section(_report(pipe, folder))
    header, rows = _table(section, "Kendall:")
    expected = sorted(FRACTIONS)
    assert header[1:-1] == [f"{STEPS[f] * BATCH:,} rows ({100 * f:g} %)" for f in expected]
    assert [int(h.split()[0].replace(",", "")) for h in header[1:-1]] == [0, 5 * BATCH, 10 * BATCH]
    assert header[-1] == "fresh weights"
    for term in TERMS:
        for emb in ("none", "rows"):
            assert f"{term}, embeddings `{emb}`" in rows
    assert any(r.startswith("`sigeo` (pipeline entry") for r in rows) and "`oneshot`" in rows
    assert rows["`oneshot`"][-1] == "--"  # oneshot reads a supernet: no fresh weights

    s = load_bench(pipe).stats
    t = -truth.mean(axis=1)
    for emb in ("none", "rows"):
        cells = rows[f"l3 (-loss), embeddings `{emb}`"]
        contexts = [f"inherit {100 * f:g}%" for f in expected] + ["fresh"]
        for cell, ctx in zip(cells, contexts):
            m = _CELL.match(cell)
            assert m, cell
            k, lo, hi = map(float, m.groups())
            assert lo <= k <= hi
            p = vectors[f"sigeo[l3 (-loss); emb={emb}] | {ctx}"]
            assert k == pytest.approx(stats.kendall(p, t), abs=6e-4)
            want = stats.bootstrap_ci(stats.kendall, p, t, n_boot=s.n_boot, alpha=s.alpha, seed=s.seed)
            assert (lo, hi) == pytest.approx(want, abs=6e-4)
    # every cell of the table brackets its point estimate
    for name, cells in rows.items():
        for cell in cells:
            if cell != "--":
                k, lo, hi = map(float, _CELL.match(cell).groups())
                assert lo <= k <= hi, (name, cell)


def test_the_other_sections_are_unchanged(tmp_path: Path) -> None:
    """Without single-term combinations in the pipeline the section is left out; the rest of the
    report is then the same text, byte for byte, as the report with it minus the section."""
    pipe, folder, _, _ = _folder(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    with_section = _report(pipe, folder)
    without = _report(pipe, other, "sigeo_ablation.combos={l1+l2: [1, 1, 0]}")
    assert HEADING not in without and not (other / SIGEO_TERMS_PLOT).exists()
    cut = with_section.replace(_section(with_section) + "\n", "")
    assert cut == without


def test_warmup_rows_are_steps_times_batch_and_unknown_steps_stay_unknown(tmp_path: Path) -> None:
    from recnas.bench.config import load_bench

    cfg = load_bench(tiny_bench_pipeline(tmp_path, "w", tmp_path / "cache", num_archs=4,
                                         warmup={"fractions": [0.1, 0.0, 0.2], "batch_size": 16}))
    warm = pd.DataFrame({"fraction": [0.0, 0.1, 0.2], "steps": [-1, 3, -1], "seconds": [0.0, 1.0, 2.0]})
    got = warmup_rows(cfg, warm, [0.2, 0.0, 0.1])
    assert got["fraction"].tolist() == [0.0, 0.1, 0.2]
    assert got["rows"].iloc[:2].tolist() == [0.0, 48.0] and np.isnan(got["rows"].iloc[2])
