"""``recnas bench diagnose``: correlations with size and the truth, and the partial correlation given size.

Fast: synthetic scores, no training; the CLI runs on a comparison folder written here (the tiny
space, 12 architectures x 2 seeds, invented log losses and scores).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from benchkit import tiny_bench_pipeline
from scipy import stats as sps
from sklearn.linear_model import LinearRegression

from recnas.bench import stats
from recnas.bench.diagnose import (
    DIAGNOSE_CSV,
    DIAGNOSE_MD,
    DIAGNOSE_PLOT,
    STATISTICS,
    WITHIN_WIDTH,
    _feature_map,
    diagnose,
    kendall_within,
    partial_spearman,
    size_controls,
    size_table,
)


def _world(n: int = 300, size_effect: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """A latent size ``s`` behind the size measures, and a truth that is ``size_effect * s`` + its own part
    (one embedding width: the total params are the dense ones plus a constant table count)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    own = rng.normal(size=n)
    truth = own + size_effect * s
    sizes = pd.DataFrame({
        "tensors": np.round(60 + 12 * s + rng.normal(scale=1.0, size=n)).astype(int),
        "params": np.exp(13 + s),
        "flops": np.exp(14 + s + rng.normal(scale=0.05, size=n)),
    })
    sizes["params_total"] = sizes["params"] + 26 * 50 * 16
    return truth, own, sizes


def _controls(sizes: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.log(sizes["params"]), np.log(sizes["flops"]), sizes["tensors"],
                            np.log(sizes["params_total"])])


def _two_widths(n: int = 240, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Two embedding widths behind most of the truth (as on bench_ctr); the dense size is independent of it."""
    rng = np.random.default_rng(seed)
    width = rng.choice([8, 16], size=n)
    s = rng.normal(size=n)
    own = rng.normal(size=n)
    truth = 3.0 * (width == 16) + own
    dense = np.exp(11 + s)
    sizes = pd.DataFrame({
        "tensors": np.round(60 + 12 * s + rng.normal(scale=1.0, size=n)).astype(int),
        "params": dense,
        "flops": np.exp(12 + s + rng.normal(scale=0.05, size=n)) + 26 * width,
        "params_total": dense + 26 * 10_000 * width,
    })
    return truth, own, width, sizes


def test_partial_recovers_the_truth_part_of_truth_plus_size() -> None:
    truth, _, sizes = _world()
    size = np.log(sizes["params"].to_numpy())
    for c in (2.0, 4.0):
        score = truth + c * size
        raw = sps.spearmanr(score, truth).statistic
        part = partial_spearman(score, truth, _controls(sizes))
        assert raw < 0.5, raw  # diluted by size
        assert part > 0.85, part  # the truth-only part comes back
    df = diagnose({"mix": truth + 3 * size}, truth, sizes, n_boot=100)
    r = df.loc["mix"]
    assert r["partial_truth"] > 0.85 and r["spearman_truth"] < 0.5
    assert r["spearman_params"] > 0.9 and r["kendall_params"] > 0.7
    for name in STATISTICS:
        assert r[f"{name}_lo"] <= r[name] + 1e-12 and r[name] <= r[f"{name}_hi"] + 1e-12, name


def test_a_score_that_is_size_has_no_partial_correlation() -> None:
    # the truth leans on size, so a size-only score has a raw correlation with it, and nothing beyond
    truth, _, sizes = _world(size_effect=0.8, seed=1)
    ctrl = _controls(sizes)
    tensors = sizes["tensors"].to_numpy(float)
    assert sps.spearmanr(tensors, truth).statistic > 0.4
    assert partial_spearman(tensors, truth, ctrl) == 0.0  # a control itself: exactly 0
    assert partial_spearman(np.sqrt(sizes["params"].to_numpy()), truth, ctrl) == 0.0  # monotone in one
    blend = np.log(sizes["params"].to_numpy()) + 0.05 * tensors  # a mix: not a rank of any one control
    assert sps.spearmanr(blend, truth).statistic > 0.4
    assert abs(partial_spearman(blend, truth, ctrl)) < 0.15
    df = diagnose({"tensors": tensors, "blend": blend}, truth, sizes, n_boot=100)
    assert df.loc["tensors", "partial_truth"] == 0.0 and df.loc["tensors", "kendall_tensors"] == pytest.approx(1.0)
    assert df.loc["blend", "partial_truth_lo"] < 0 < df.loc["blend", "partial_truth_hi"] + 0.05


def test_partial_is_the_correlation_of_rank_residuals() -> None:
    # the same quantity computed another way: scikit-learn's regression, numpy's correlation
    rng = np.random.default_rng(3)
    truth, _, sizes = _world(n=80, size_effect=0.5, seed=3)
    score = truth + rng.normal(size=80) + np.log(sizes["flops"].to_numpy())
    ctrl = _controls(sizes)
    z = np.column_stack([sps.rankdata(c) for c in ctrl.T])

    def resid(v: np.ndarray) -> np.ndarray:
        r = sps.rankdata(v)
        return r - LinearRegression().fit(z, r).predict(z)

    expected = np.corrcoef(resid(score), resid(truth))[0, 1]
    assert partial_spearman(score, truth, ctrl) == pytest.approx(expected, abs=1e-10)
    assert np.isnan(partial_spearman(np.ones(80), truth, ctrl))  # a constant ranks nothing
    with pytest.raises(ValueError, match="disagree"):
        partial_spearman(score[:-1], truth, ctrl)


def test_diagnose_rejects_bad_input() -> None:
    truth, _, sizes = _world(n=20)
    with pytest.raises(ValueError, match="not finite"):
        diagnose({"x": np.r_[np.nan, truth[1:]]}, truth, sizes, n_boot=5)
    with pytest.raises(ValueError, match="expected 20"):
        diagnose({"x": truth[:5]}, truth, sizes, n_boot=5)
    with pytest.raises(ValueError, match="lacks"):
        diagnose({"x": truth}, truth, sizes.drop(columns="flops"), n_boot=5)
    with pytest.raises(ValueError, match="lacks"):
        diagnose({"x": truth}, truth, sizes.drop(columns="params_total"), n_boot=5)
    with pytest.raises(ValueError, match="widths: expected 20"):
        diagnose({"x": truth}, truth, sizes, n_boot=5, widths=[8, 16])


def test_the_embedding_width_is_size_too() -> None:
    # the width decides most of the truth: the width itself and the total params (tables included)
    # rank well raw, but know nothing beyond size, and nothing within a width
    truth, own, width, sizes = _two_widths()
    total = sizes["params_total"].to_numpy()
    assert sps.kendalltau(total, truth).statistic > 0.4
    df = diagnose({"width": width.astype(float), "total": total, "own": own, "mix": own + 3.0 * (width == 16)},
                  truth, sizes, n_boot=40, widths=width)
    for lb in ("width", "total"):
        assert df.loc[lb, "kendall_truth"] > 0.4, lb
        assert df.loc[lb, "partial_truth"] == 0.0, lb  # the width indicator / a control: exactly 0
        assert abs(df.loc[lb, WITHIN_WIDTH]) < 0.15, lb
    assert df.loc["width", WITHIN_WIDTH] == 0.0  # constant within each width: ranks nothing there
    assert df.loc["total", "kendall_params_total"] == pytest.approx(1.0)
    # a score that knows the within-width part keeps it; one that also knows the width is the truth itself
    for lb in ("own", "mix"):
        assert df.loc[lb, "partial_truth"] > 0.9 and df.loc[lb, WITHIN_WIDTH] > 0.8, lb
    assert df.loc["own", "kendall_truth"] < df.loc["own", WITHIN_WIDTH] - 0.3  # the raw figure mixes widths
    assert df.loc["mix", "kendall_truth"] == pytest.approx(1.0)
    # the mean is the size-weighted mean of the per-width Kendalls, each scipy's
    per = {w: sps.kendalltau(own[width == w], truth[width == w]).statistic for w in (8, 16)}
    assert df.loc["own", "kendall_within_e8"] == pytest.approx(per[8])
    assert df.loc["own", "kendall_within_e16"] == pytest.approx(per[16])
    weights = [(width == w).sum() for w in (8, 16)]
    assert df.loc["own", WITHIN_WIDTH] == pytest.approx(np.average([per[8], per[16]], weights=weights))
    for name in (WITHIN_WIDTH, "kendall_within_e8", "kendall_within_e16"):
        assert df.loc["own", f"{name}_lo"] <= df.loc["own", name] <= df.loc["own", f"{name}_hi"], name
    # the width indicators are what makes a width-only score 0 (the total enters only through its ranks)
    assert partial_spearman(width, truth, size_controls(sizes), width) == 0.0
    assert kendall_within([1, 2, 3, 10, 20, 30], [3, 2, 1, 30, 20, 10], [8, 8, 8, 16, 16, 16]) == -1.0


def test_one_width_gives_the_partials_of_the_dense_controls() -> None:
    # one width: the total repeats the ranks of the dense params (a rank-deficient design) and no
    # indicator is added, so every partial is the three-control one, and no within-width column appears
    truth, own, sizes = _world(n=120, size_effect=0.6, seed=7)
    rng = np.random.default_rng(7)
    scores = {"own": own + rng.normal(size=120), "mix": truth + np.log(sizes["flops"].to_numpy()),
              "tensors": sizes["tensors"].to_numpy(float), "noise": rng.normal(size=120)}
    ctrl = _controls(sizes)
    width = np.full(120, 16)
    df = diagnose(scores, truth, sizes, n_boot=30, widths=width)
    for lb, x in scores.items():
        before = partial_spearman(x, truth, ctrl[:, :3])
        assert partial_spearman(x, truth, ctrl, width) == pytest.approx(before, abs=1e-10), lb
        assert df.loc[lb, "partial_truth"] == pytest.approx(before, abs=1e-10), lb
    assert not [c for c in df.columns if "within" in c]
    # the intervals too: the same resamples, the three-control partial on each
    x = scores["own"]

    def before(a: np.ndarray, _b: np.ndarray) -> float:
        i = a.astype(np.intp)
        return partial_spearman(x[i], truth[i], ctrl[i, :3])

    idx = np.arange(120, dtype=float)
    lo, hi = stats.bootstrap_ci(before, idx, idx, n_boot=30)
    assert (df.loc["own", "partial_truth_lo"], df.loc["own", "partial_truth_hi"]) == pytest.approx((lo, hi), abs=1e-10)


# -- the CLI on a committed-like comparison folder ------------------------------------------------------


def _comparison(tmp: Path, *, wrong_params: bool = False, widths: tuple[int, ...] = ()) -> tuple[Path, Path, list[str]]:
    from recnas.bench.config import build_signature, load_bench
    from recnas.bench.groundtruth import sample_archs
    from recnas.space import SearchSpace

    extra = {}
    if widths:  # the tiny space with an embedding-width choice
        space = yaml.safe_load((Path(__file__).parents[1] / "spaces" / "tiny.yaml").read_text())
        (tmp / "tiny_widths.yaml").write_text(yaml.safe_dump({**space, "embedding_dims": list(widths)}))
        extra["space"] = str(tmp / "tiny_widths.yaml")
    pipe = tiny_bench_pipeline(tmp, "cmp", tmp / "cache", num_archs=12, n_boot=30, **extra)
    cfg = load_bench(pipe)
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    sizes = size_table(specs, _feature_map(cfg.data))
    assert sizes["tensors"].nunique() > 1
    rng = np.random.default_rng(0)
    own = rng.normal(size=len(specs))
    folder = tmp / "committed"
    folder.mkdir()
    (folder / "build.json").write_text(json.dumps(build_signature(cfg), indent=2))
    rows = []
    for i, (spec, z) in enumerate(zip(specs, own)):
        for seed in cfg.train.seeds:
            rows.append({"arch": i, "key": spec.key(), "spec": spec.to_json(), "seed": seed,
                         "test_logloss": 0.48 - 0.001 * z + 0.0001 * rng.normal(),
                         "params": int(sizes["params"][i]) + (1 if wrong_params and i == 3 else 0),
                         "flops": int(sizes["flops"][i]), "params_total": int(sizes["params_total"][i])})
    pd.DataFrame(rows).to_csv(folder / "groundtruth.csv", index=False)
    results = pd.DataFrame([
        {"label": "sigeo | fresh", "estimator": "sigeo", "kind": "estimator", "init": "fresh", "fraction": np.nan,
         "embeddings": np.nan, "failed": 0},
        {"label": "sigeo[l1 (ZiCo); emb=none] | fresh", "estimator": "sigeo l1 (ZiCo)", "kind": "sigeo_ablation",
         "init": "fresh", "fraction": np.nan, "embeddings": "none", "failed": 0},
        {"label": "sigeo[l3 (-loss); emb=none] | inherit 50%", "estimator": "sigeo l3 (-loss)",
         "kind": "sigeo_ablation", "init": "inherit", "fraction": 0.5, "embeddings": "none", "failed": 0},
        {"label": "oneshot | inherit 50%", "estimator": "oneshot", "kind": "estimator", "init": "inherit",
         "fraction": 0.5, "embeddings": np.nan, "failed": 0},
    ])
    results.to_csv(folder / "results.csv", index=False)
    t = sizes["tensors"].to_numpy(float)
    scores = pd.DataFrame({"arch": range(len(specs)), "key": [s.key() for s in specs]})
    scores["sigeo | fresh"] = 2.0 * t + 0.1 * rng.normal(size=len(specs))
    scores["sigeo[l1 (ZiCo); emb=none] | fresh"] = 2.0 * t
    scores["sigeo[l3 (-loss); emb=none] | inherit 50%"] = own + 0.3 * rng.normal(size=len(specs))
    scores["oneshot | inherit 50%"] = own
    scores.to_csv(folder / "scores.csv", index=False)
    return pipe, folder, results["label"].tolist()


def test_cli_writes_the_diagnosis_of_a_committed_folder(tmp_path: Path) -> None:
    from recnas.cli import main

    pipe, folder, labels = _comparison(tmp_path)
    assert main(["bench", "diagnose", str(pipe), "--from", str(folder), "--no-progress"]) == 0
    out = folder / "diagnose"
    for name in (DIAGNOSE_CSV, DIAGNOSE_MD, DIAGNOSE_PLOT):
        assert (out / name).is_file(), name
    df = pd.read_csv(out / DIAGNOSE_CSV).set_index("label")
    assert set(labels) < set(df.index) and (df["kind"] == "size").sum() == 4
    assert df.loc["size: all params (tables included)", "kendall_params"] == pytest.approx(1.0)  # one width
    assert not [c for c in df.columns if "within" in c]
    assert (df["n"] == 12).all()
    for name in STATISTICS:
        assert {name, f"{name}_lo", f"{name}_hi"} <= set(df.columns)
    assert df.loc["sigeo[l1 (ZiCo); emb=none] | fresh", "kendall_tensors"] == pytest.approx(1.0)
    assert df.loc["sigeo[l1 (ZiCo); emb=none] | fresh", "partial_truth"] == 0.0
    assert df.loc["oneshot | inherit 50%", "spearman_truth"] == pytest.approx(1.0)
    text = (out / DIAGNOSE_MD).read_text()
    assert "## SiGeo's terms" in text and "| l1: ZiCo | fresh |" in text and "| l3: -loss | inherit 50% |" in text
    assert DIAGNOSE_PLOT in text and "oneshot \\| inherit 50%" in text
    assert "| all params (tables included) |" in text and "Kendall within width" not in text
    # --out elsewhere, and a table whose sizes are not the rebuilt models' is refused
    other = tmp_path / "elsewhere"
    assert main(["bench", "diagnose", str(pipe), "--from", str(folder), "--out", str(other), "--no-progress",
                 "--set", "stats.n_boot=5"]) == 0
    assert (other / DIAGNOSE_CSV).is_file()


def test_cli_refuses_sizes_that_disagree_with_the_table(tmp_path: Path) -> None:
    from recnas.bench.diagnose import run_diagnose
    from recnas.bench.config import load_bench

    pipe, folder, _ = _comparison(tmp_path, wrong_params=True)
    with pytest.raises(ValueError, match="architecture 3's params"):
        run_diagnose(load_bench(pipe), from_dir=folder, progress=False)


def test_cli_adds_the_within_width_column_with_two_widths(tmp_path: Path) -> None:
    from recnas.cli import main

    pipe, folder, labels = _comparison(tmp_path, widths=(4, 8))
    assert main(["bench", "diagnose", str(pipe), "--from", str(folder), "--no-progress"]) == 0
    df = pd.read_csv(folder / "diagnose" / DIAGNOSE_CSV).set_index("label")
    assert {WITHIN_WIDTH, "kendall_within_e4", "kendall_within_e8", f"{WITHIN_WIDTH}_lo"} <= set(df.columns)
    total = df.loc["size: all params (tables included)"]
    assert total["partial_truth"] == 0.0 and np.isfinite(total[WITHIN_WIDTH])
    assert df.loc["oneshot | inherit 50%", WITHIN_WIDTH] == pytest.approx(1.0)  # the truth's own ranking
    text = (folder / "diagnose" / DIAGNOSE_MD).read_text()
    assert "Kendall within width" in text and "one indicator per embedding width" in text


def test_a_vocabulary_takes_the_total_from_the_table(tmp_path: Path) -> None:
    from recnas.bench.diagnose import _check_sizes

    truth, _, sizes = _world(n=4)
    keys = list("abcd")
    table = pd.DataFrame({"key": keys, "params": sizes["params"], "flops": sizes["flops"],
                          "params_total": sizes["params"] + 1000})
    got = sizes.copy()
    _check_sizes(got, table, keys, tmp_path, hashed=False)
    assert (got["params_total"] == (sizes["params"] + 1000).astype(np.int64)).all()
    with pytest.raises(ValueError, match="no params_total"):
        _check_sizes(sizes.copy(), table.drop(columns="params_total"), keys, tmp_path, hashed=False)
    table["params_total"] += 1
    with pytest.raises(ValueError, match="architecture 0's params_total"):
        _check_sizes(sizes.copy(), table, keys, tmp_path, hashed=True)
