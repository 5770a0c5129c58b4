"""zc_gbt: gradient-boosted trees on the zero-cost proxies' scores (issue 12, "beyond the anchors").

The model, its featurizer (rows matched to architectures by key, never by position; label columns
never features; missing scores a one-line error naming the estimator), and the bench: `recnas bench
sweep` hands the predictor the comparison's own score vectors, and `recnas bench report` lists the
new predictors, the comparison with `params` and the regret curves.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from recnas.bench.groundtruth import sample_archs
from recnas.estimators import make_estimator
from recnas.predictors import ProxyTable, ZeroCostGBT
from recnas.space import SearchSpace
from recnas.space.features import featurize

SPACE = SearchSpace.load("tiny")
N = 40
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table() -> tuple[list, pd.DataFrame, np.ndarray]:
    """``N`` tiny-space architectures; the truth is a monotone function of the proxy ``good | fresh``
    (plus noise), ``noise | none`` is unrelated to it; ``test_logloss_mean`` is the label itself."""
    specs = sample_archs(SPACE, N, seed=0)
    rng = np.random.default_rng(0)
    good = rng.normal(size=N)
    truth = np.tanh(good) + 0.05 * rng.normal(size=N)
    frame = pd.DataFrame({"arch": range(N), "key": [s.key() for s in specs], "test_logloss_mean": -truth,
                          "good | fresh": good, "noise | none": rng.normal(size=N)})
    return specs, frame, truth


def _fit_rank(specs: list, scores: pd.DataFrame, truth: np.ndarray, **params) -> float:
    """Held-out Kendall of zc_gbt fitted on the first 25 architectures."""
    p = make_estimator("zc_gbt", scores=scores, n_estimators=60, **params).fit(specs[:25], truth[:25], space=SPACE)
    return float(sps.kendalltau(p.predict(specs[25:]), truth[25:])[0])


def test_zc_gbt_fits_predicts_and_learns_the_informative_proxy(table) -> None:
    specs, frame, truth = table
    p = make_estimator("zc_gbt", scores=frame, n_estimators=60).fit(specs[:25], truth[:25], space=SPACE)
    pred = p.predict(specs[25:])
    assert pred.shape == (N - 25,) and np.isfinite(pred).all()
    # features: the two proxy columns (never the label column), then the one-hot encoding
    names = p.feature_names()
    assert names[:2] == ["good | fresh", "noise | none"] and len(names) == 2 + featurize("onehot", SPACE, specs[:1]).shape[1]
    assert "test_logloss_mean" not in names
    assert sps.kendalltau(pred, truth[25:])[0] > 0.6
    # the same model without the informative column (proxies: a selection) or with it scrambled
    # across architectures ranks no better than chance
    assert _fit_rank(specs, frame, truth, proxies=["noise"], onehot=False) < 0.35
    scrambled = frame.assign(**{"good | fresh": np.random.default_rng(5).permutation(frame["good | fresh"].to_numpy())})
    assert _fit_rank(specs, scrambled, truth, onehot=False) < 0.35
    # proxies only: no space needed; a clone is unfitted and keeps the parameters
    q = ZeroCostGBT(scores=frame, onehot=False, n_estimators=60).fit(specs[:25], truth[:25])
    assert q.features(specs[:3]).shape == (3, 2)
    assert not getattr(q.clone(), "is_fitted_", False) and q.clone().get_params()["onehot"] is False


def test_features_follow_the_architecture_keys_not_the_row_order(table, tmp_path: Path) -> None:
    specs, frame, truth = table
    perm = np.random.default_rng(1).permutation(N)
    shuffled = frame.iloc[perm].reset_index(drop=True)
    a = ZeroCostGBT(scores=frame, n_estimators=60, seed=3).fit(specs[:25], truth[:25], space=SPACE)
    b = ZeroCostGBT(scores=shuffled, n_estimators=60, seed=3).fit(specs[:25], truth[:25], space=SPACE)
    np.testing.assert_array_equal(a.features(specs), b.features(specs))
    np.testing.assert_array_equal(a.predict(specs[25:]), b.predict(specs[25:]))
    # each architecture's row is its own, whatever order the specs come in
    order = np.random.default_rng(2).permutation(N)
    X = a.features([specs[i] for i in order])
    np.testing.assert_array_equal(X[:, 0], frame["good | fresh"].to_numpy()[order])
    # a scores.csv path reads the same (the ground-truth columns dropped)
    shuffled.to_csv(tmp_path / "scores.csv", index=False)
    c = ZeroCostGBT(scores=str(tmp_path / "scores.csv"), n_estimators=60, seed=3).fit(specs[:25], truth[:25], space=SPACE)
    np.testing.assert_allclose(c.predict(specs[25:]), a.predict(specs[25:]))


def test_missing_scores_are_one_clear_error_naming_the_estimator(table) -> None:
    specs, frame, truth = table
    holed = frame.copy()
    holed.loc[7, "noise | none"] = np.nan
    with pytest.raises(ValueError, match=r"proxy scores of estimator 'noise \| none' are missing \(not finite\) for 1 of 25"):
        ZeroCostGBT(scores=holed).fit(specs[:25], truth[:25], space=SPACE)
    with pytest.raises(ValueError, match=r"no proxy scores of estimator 'synflow' in the proxy score table; its columns are"):
        ZeroCostGBT(scores=frame, proxies=["synflow"]).fit(specs[:25], truth[:25], space=SPACE)
    with pytest.raises(ValueError, match=r"'test_logloss_mean' is a ground-truth or identifier column, not a proxy"):
        ZeroCostGBT(scores=frame, proxies=["test_logloss_mean"]).fit(specs[:25], truth[:25], space=SPACE)
    with pytest.raises(ValueError, match=r"no proxy scores for 1 of 26 architectures .* \(first: "):
        ZeroCostGBT(scores=frame.drop(index=25)).fit(specs[:26], truth[:26], space=SPACE)
    with pytest.raises(ValueError, match=r"predictor 'zc_gbt': no proxy scores \(scores=\)"):
        make_estimator("zc_gbt").fit(specs[:25], truth[:25], space=SPACE)
    with pytest.raises(ValueError, match=r"architecture '.*' has more than one row"):
        ProxyTable(pd.concat([frame, frame.iloc[:1]]))


def test_sweep_and_report_list_the_new_predictors_beside_the_proxies(tmp_path: Path) -> None:
    """`recnas bench sweep` then `recnas bench report` on a copy of the committed bench_synth folder
    (its ground truth and score vectors; 2 splits at one training size to stay quick)."""
    from recnas.cli import main

    src = REPO / "reports" / "bench_synth"
    work = tmp_path / "bench"
    work.mkdir()
    for name in ("build.json", "groundtruth.csv", "results.csv", "scores.csv", "ceiling.csv"):
        shutil.copy(src / name, work / name)
    shutil.copytree(src / "regret", work / "regret")
    sets = ["predictors.splits=2", "predictors.train_fractions=[0.4]",
            "estimators=[{name: params}, {name: oneshot}, {name: gbt, params: {n_estimators: 30}},"
            " {name: zc_gbt, params: {n_estimators: 30}},"
            " {name: zc_gbt, params: {n_estimators: 30, onehot: false}, label: zc_gbt_proxies}]"]
    args = ["pipelines/bench_synth.yaml", *[x for s in sets for x in ("--set", s)]]
    assert main(["bench", "sweep", *args, "--from", str(work), "--no-progress"]) == 0
    sweep = pd.read_csv(work / "sweep.csv")
    assert {"zc_gbt", "zc_gbt_proxies", "params | none", "oneshot | inherit 10%"} <= set(sweep["label"])
    summary = pd.read_csv(work / "sweep_summary.csv")
    zc = summary[summary["label"] == "zc_gbt"].iloc[0]
    assert zc["reference"] == "params | none" and np.isfinite(zc["reference_diff"])
    # the reference difference is the paired per-split difference of the two rows of sweep.csv
    per = sweep.set_index(["label", "split"])["kendall"]
    assert np.isclose(zc["reference_diff"], float((per["zc_gbt"] - per["params | none"]).mean()))

    assert main(["bench", "report", *args, "--from", str(work)]) == 0
    text = (work / "report.md").read_text()
    assert "Not in this table: the predictors (`gbt`, `zc_gbt`, `zc_gbt_proxies`)" in text
    for row in ("| **zc_gbt** (predictor) |", "| **zc_gbt_proxies** (predictor) |", "| params (none) |"):
        assert row in text
    assert "42 estimator columns" in text and "30 columns of SiGeo's three raw terms" in text
    assert "Each predictor against `params (none)`, the simplest proxy" in text
    assert "## Search strategies: regret curves" in text and "](regret/regret_queries.png)" in text
    assert "| evolution_sigeo |" in text and "](sweep_kendall.png)" in text
    # without warmup.csv the warm-up's steps and seconds are unknown, not invented
    assert "| 10% | -- | -- |" in text
