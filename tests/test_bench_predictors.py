"""recnas bench: predictors judged by the training-set-size sweep; capability flags instead of names.

Pure-function tests run the sweep on synthetic truths over real architectures of the tiny space;
the pipeline test builds a tiny benchmark for real (data stage, TorchRec training of every
architecture and seed, supernet warm-up, estimators) and compares with a ridge entry in it.
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from benchkit import tiny_bench_pipeline
from scipy import stats as sps

from recnas.bench import stats
from recnas.bench.compare import ScoreSet, predictor_sweep, sweep_summary
from recnas.bench.config import BenchConfig, EstimatorEntry, PredictorSection, load_bench
from recnas.bench.groundtruth import sample_archs
from recnas.config import ConfigError
from recnas.estimators import ESTIMATORS, Estimator, make_estimator
from recnas.predictors import Ridge
from recnas.space import SearchSpace
from recnas.space.features import featurize

SPACE = SearchSpace.load("tiny")
N = 40
SEEDS = 3
TIMING = ["fit_seconds", "query_seconds"]


def _pipeline(tmp: Path, out: str, cache: Path, **extra) -> Path:
    extra.setdefault("estimators", [{"name": "params"}, {"name": "ridge"}])
    return tiny_bench_pipeline(tmp, out, cache, num_archs=extra.pop("num_archs", 6), n_boot=20, **extra)


# -- synthetic truths --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synth() -> tuple[list, np.ndarray, np.ndarray]:
    """``N`` tiny-space architectures whose quality is a linear function of their one-hot encoding;
    test log loss = 0.48 - 0.002 x quality + seed noise, for ``SEEDS`` seeds."""
    specs = sample_archs(SPACE, N, seed=0)
    X = featurize("onehot", SPACE, specs).astype(np.float64)
    rng = np.random.default_rng(0)
    quality = X @ rng.normal(size=X.shape[1])
    quality = (quality - quality.mean()) / quality.std()
    ll = 0.48 - 0.002 * quality[:, None] + 0.0002 * rng.normal(size=(N, SEEDS))
    return specs, ll, quality


def _others(quality: np.ndarray) -> list[ScoreSet]:
    rng = np.random.default_rng(1)
    return [
        ScoreSet("noisy | fresh", "noisy", "estimator", "fresh", float("nan"), quality + rng.normal(size=N), 2.0),
        ScoreSet("random | inherit 10%", "random", "estimator", "inherit", 0.1, rng.normal(size=N), 4.0),
    ]


def test_splits_are_disjoint_sized_and_seeded() -> None:
    for n_train in (2, 7, 20):
        splits = stats.train_test_splits(30, n_train, 25, seed=3)
        assert len(splits) == 25
        for tr, te in splits:
            assert len(tr) == n_train and len(te) == 30 - n_train
            assert not set(tr) & set(te) and sorted([*tr, *te]) == list(range(30))
        assert len({tuple(tr) for tr, _ in splits}) > 1
        again = stats.train_test_splits(30, n_train, 25, seed=3)
        assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(splits, again))
        other = stats.train_test_splits(30, n_train, 25, seed=4)
        assert any((a[0] != b[0]).any() for a, b in zip(splits, other))
    for bad in (1, 29):
        with pytest.raises(ValueError, match="at least 2 architectures on each side"):
            stats.train_test_splits(30, bad, 5, seed=0)


class _Spy(Ridge):
    """Ridge that records what it is fitted on and asked to predict (unregistered: no name)."""

    name = ""
    calls: list = []

    def fit(self, specs, y, space=None):
        _Spy.calls.append(("fit", [s.key() for s in specs], np.asarray(y, dtype=float)))
        return super().fit(specs, y, space)

    def predict(self, specs):
        _Spy.calls.append(("predict", [s.key() for s in specs], None))
        return super().predict(specs)


def test_predictor_fits_on_training_archs_and_ranks_exactly_the_held_out_ones(synth) -> None:
    specs, ll, quality = synth
    keys = [s.key() for s in specs]
    section = PredictorSection(train_fractions=(0.1, 0.25, 0.5), splits=5, seed=7)
    _Spy.calls.clear()
    sweep = predictor_sweep({"spy": _Spy()}, specs, ll, _others(quality), section, space=SPACE)
    calls = _Spy.calls
    assert len(calls) == 2 * 3 * 5
    y_of = dict(zip(keys, -ll.mean(axis=1)))
    i = 0
    for f, n_train in zip(section.train_fractions, (4, 10, 20)):
        # the same splits every other estimator is judged on
        for tr, te in stats.train_test_splits(N, n_train, 5, seed=7):
            (fit, fit_keys, y), (pred, pred_keys, _) = calls[i], calls[i + 1]
            i += 2
            assert (fit, pred) == ("fit", "predict")
            assert fit_keys == [keys[j] for j in tr] and pred_keys == [keys[j] for j in te]
            assert not set(fit_keys) & set(pred_keys) and len(fit_keys) + len(pred_keys) == N
            np.testing.assert_allclose(y, [y_of[k] for k in fit_keys])  # y = minus the seed-mean log loss
        rows = sweep[sweep["train_fraction"] == f]
        assert (rows["n_train"] == n_train).all() and (rows["n_test"] == N - n_train).all()
        spy = rows[rows["kind"] == "predictor"]
        assert len(spy) == 5 and (spy["gt_runs"] == n_train * SEEDS).all()
        assert (rows.loc[rows["kind"] != "predictor", "gt_runs"] == 0).all()
    assert len(sweep) == 3 * 5 * 3


def test_other_estimators_rows_are_their_statistics_on_the_same_held_out_sets(synth) -> None:
    specs, ll, quality = synth
    others = _others(quality)
    section = PredictorSection(train_fractions=(0.2, 0.5), splits=6, seed=2)
    sweep = predictor_sweep({"ridge": make_estimator("ridge")}, specs, ll, others, section, top_frac=0.1, space=SPACE)
    truth = -ll.mean(axis=1)
    for f in section.train_fractions:
        n_train = int(round(f * N))
        for j, (_, te) in enumerate(stats.train_test_splits(N, n_train, 6, seed=2)):
            for x in others:
                r = sweep[(sweep["label"] == x.label) & (sweep["train_fraction"] == f) & (sweep["split"] == j)]
                assert len(r) == 1
                r = r.iloc[0]
                p, t = x.scores[te], truth[te]
                assert r["kendall"] == pytest.approx(sps.kendalltau(p, t).statistic, abs=1e-12)
                assert r["spearman"] == pytest.approx(sps.spearmanr(p, t).statistic, abs=1e-12)
                k = max(1, round(0.1 * len(te)))
                assert r["top"] == pytest.approx(len(set(np.argsort(-p)[:k]) & set(np.argsort(-t)[:k])) / k)
                assert r["query_seconds"] == pytest.approx(x.seconds * len(te) / N)
                assert (r["init"], r["estimator"]) == (x.init, x.estimator)


def test_ridge_learns_a_truth_of_the_encoding_and_not_a_shuffled_one(synth) -> None:
    specs, ll, quality = synth
    section = PredictorSection(train_fractions=(0.25, 0.5), splits=20, seed=0)

    def kendall(truth: np.ndarray) -> pd.DataFrame:
        s = sweep_summary(predictor_sweep({"ridge": make_estimator("ridge")}, specs, truth, [], section, space=SPACE))
        return s.set_index("train_fraction")[["kendall_mean", "kendall_lo", "kendall_hi"]]

    learn = kendall(ll)
    chance = [kendall(ll[np.random.default_rng(s).permutation(N)]) for s in range(4)]
    means = np.array([c["kendall_mean"].to_numpy() for c in chance])
    assert learn.at[0.25, "kendall_mean"] > 0.2 and learn.at[0.5, "kendall_mean"] > 0.4, learn
    assert learn.at[0.5, "kendall_mean"] > learn.at[0.25, "kendall_mean"]  # more training data, better ranking
    assert (np.abs(means.mean(axis=0)) < 0.06).all(), means  # shuffled: no better than chance on average
    for c in chance:
        assert ((c["kendall_lo"] < 0) & (c["kendall_hi"] > 0)).all(), c
    assert learn.at[0.25, "kendall_mean"] > means.max() + 0.1
    assert learn.at[0.5, "kendall_mean"] > means.max() + 0.3


def test_sweep_reproduces_for_a_seed_and_its_summary_is_the_per_split_rows(synth) -> None:
    specs, ll, quality = synth
    section = PredictorSection(train_fractions=(0.3,), splits=8, seed=11)
    ests = {"ridge": make_estimator("ridge", alpha=0.5)}
    a = predictor_sweep(ests, specs, ll, _others(quality), section, space=SPACE)
    b = predictor_sweep(ests, specs, ll, _others(quality), section, space=SPACE)
    pd.testing.assert_frame_equal(a.drop(columns=TIMING), b.drop(columns=TIMING))
    c = predictor_sweep(ests, specs, ll, _others(quality), PredictorSection((0.3,), 8, 12), space=SPACE)
    assert not np.allclose(a["kendall"], c["kendall"])
    s = sweep_summary(a, alpha=0.1).set_index("label")
    for label, g in a.groupby("label"):
        v = g["kendall"].to_numpy()
        assert s.at[label, "kendall_mean"] == pytest.approx(v.mean())
        assert s.at[label, "kendall_std"] == pytest.approx(v.std(ddof=1))
        assert (s.at[label, "kendall_lo"], s.at[label, "kendall_hi"]) == pytest.approx(tuple(np.quantile(v, [0.05, 0.95])))
        assert s.at[label, "splits"] == 8
    best = s[s["kind"] != "predictor"]["kendall_mean"].idxmax()
    assert s.at["ridge", "best_other"] == best
    d = a[a["label"] == "ridge"]["kendall"].to_numpy() - a[a["label"] == best]["kendall"].to_numpy()
    assert s.at["ridge", "kendall_diff"] == pytest.approx(d.mean())
    assert s.at["ridge", "better_share"] == pytest.approx((d > 0).mean())
    with pytest.raises(ValueError, match="'params' is not a predictor"):
        predictor_sweep({"params": make_estimator("params")}, specs, ll, [], section, space=SPACE)


def test_sweep_in_worker_processes_gives_the_same_rows_in_the_same_order(synth) -> None:
    """``predictors.workers``: the splits after the first are fitted in joblib worker processes;
    every row (timings aside) is the one the sweep in this process gives, in the same order."""
    specs, ll, quality = synth
    ests = {"ridge": make_estimator("ridge", alpha=0.5), "rf": make_estimator("rf", n_estimators=20)}
    one = predictor_sweep(ests, specs, ll, _others(quality), PredictorSection((0.3, 0.5), 5, 3), space=SPACE)
    two = predictor_sweep(ests, specs, ll, _others(quality), PredictorSection((0.3, 0.5), 5, 3, workers=2), space=SPACE)
    pd.testing.assert_frame_equal(one.drop(columns=TIMING), two.drop(columns=TIMING))
    assert len(one) == 2 * 5 * (len(ests) + len(_others(quality)))


# -- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"predictors": {"splitz": 3}}, r"unknown key 'predictors.splitz'"),
        ({"predictors": {"train_fractions": [0.0]}}, r"'predictors': predictors.train_fractions: 0.0 is not in \(0, 1\)"),
        ({"predictors": {"train_fractions": [0.5, 1.0]}}, r"predictors.train_fractions: 1.0 is not in \(0, 1\)"),
        ({"predictors": {"train_fractions": [0.5, 0.5]}}, r"predictors.train_fractions: fractions must be distinct"),
        ({"predictors": {"workers": 0}}, r"predictors.workers must be >= 1, got 0"),
        ({"predictors": {"splits": 1}}, r"predictors.splits must be >= 2"),
        ({"predictors": {"seed": -1}}, r"predictors.seed must be in"),
        ({"predictors": {"train_fractions": [0.1, 0.5]}},
         r"'predictors.train_fractions': 0.1 of num_archs=6 is 1 training and 5 held-out"),
        ({"predictors": {"train_fractions": [0.8]}}, r"'predictors.train_fractions': 0.8 of num_archs=6 is 5 training"),
        ({"estimators": [{"name": "ridge", "inits": ["fresh"]}]}, r"'estimators\[0\].inits': 'ridge' is a predictor"),
        ({"estimators": [{"name": "ridge", "params": {"alpa": 1}}]}, r"'estimators\[0\]': .*unknown parameters \['alpa'\]"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, patch: dict, message: str) -> None:
    p = _pipeline(tmp_path, "cfg", tmp_path / "cache", **patch)
    with pytest.raises(ConfigError, match=message) as e:
        load_bench(p)
    assert str(p) in str(e.value)


def test_predictors_section_defaults_and_is_unchecked_without_a_predictor(tmp_path: Path) -> None:
    cfg = load_bench(_pipeline(tmp_path, "cfg", tmp_path / "cache", num_archs=20))
    assert cfg.predictors == PredictorSection() and cfg.predictors.train_sizes(20) == (2, 4, 8) and cfg.predictors.splits >= 20
    assert cfg.predictors.train_fractions == (0.1, 0.2, 0.4)
    assert [e.needs_fit for e in cfg.estimators] == [False, True]
    assert cfg.estimators[1].resolved_inits() == ("none",)
    # a 4-architecture bench without a predictor: 10 % of it would be no architecture, and that is fine
    assert load_bench(_pipeline(tmp_path, "small", tmp_path / "cache", num_archs=4,
                                estimators=[{"name": "params"}])).num_archs == 4
    assert BenchConfig().predictors == PredictorSection()


def test_capability_flags_not_names_decide_how_an_entry_is_scored(tmp_path: Path) -> None:
    class ToyWeightless(Estimator):
        name = "toy_weightless_proxy"
        needs_weights = False

        def __init__(self) -> None:
            pass

        def score_spec(self, spec, ctx):
            return 0.0

    class ToyOneShot(Estimator):
        name = "toy_supernet_proxy"
        needs_supernet = True

        def __init__(self) -> None:
            pass

        def score_spec(self, spec, ctx):
            return 0.0

    try:
        assert EstimatorEntry("toy_weightless_proxy").resolved_inits() == ("none",)
        assert EstimatorEntry("toy_supernet_proxy").resolved_inits() == ("inherit",)
        assert EstimatorEntry("zico").resolved_inits() == ("inherit", "fresh")
        for est, inits, message in (
            ("toy_weightless_proxy", ["fresh"], "'toy_weightless_proxy' reads no weights"),
            ("toy_supernet_proxy", ["fresh"], "'toy_supernet_proxy' scores inherited weights only"),
            ("zico", ["none"], "'zico' needs weights"),
        ):
            p = _pipeline(tmp_path, "caps", tmp_path / "cache", estimators=[{"name": est, "inits": inits}])
            with pytest.raises(ConfigError, match=message):
                load_bench(p)
    finally:
        ESTIMATORS.pop("toy_weightless_proxy", None)
        ESTIMATORS.pop("toy_supernet_proxy", None)


# -- a real tiny bench with a ridge entry ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> BenchConfig:
    from recnas.bench.compare import run_compare
    from recnas.bench.groundtruth import build

    work = tmp_path_factory.mktemp("bench_pred")
    cfg = load_bench(_pipeline(
        work, "out", work / "cache",
        estimators=[
            {"name": "sigeo", "params": {"weights": "public_criteo"}, "label": "sigeo"},
            {"name": "sigeo", "params": {"weights": "paper"}, "label": "sigeo paper"},
            {"name": "params"},
            {"name": "oneshot"},
            {"name": "zico", "inits": ["fresh"]},
            {"name": "ridge"},
        ],
        sigeo_ablation={"embeddings": ["none"], "inits": ["fresh"]},
        predictors={"train_fractions": [0.34, 0.5], "splits": 20, "seed": 1},
    ))
    build(cfg, progress=False)
    run_compare(cfg, progress=False)
    return cfg


def test_compare_judges_the_predictor_on_held_out_sets_only(compared: BenchConfig) -> None:
    cfg = compared
    out = Path(cfg.output)
    res = pd.read_csv(out / "results.csv")
    assert "ridge" not in set(res["estimator"])  # never judged on all architectures
    text = (out / "report.md").read_text()
    assert "Not in this table: the predictors (`ridge`)" in text
    assert "## Predictors: training-set-size sweep (held-out architectures)" in text
    assert "| **ridge** (predictor) |" in text and "](sweep_kendall.png)" in text
    assert (out / "sweep_kendall.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sweep = pd.read_csv(out / "sweep.csv")
    others = res[res["kind"] == "estimator"]
    assert set(sweep["label"]) == set(others["label"]) | {"ridge"}
    assert len(sweep) == (len(others) + 1) * 2 * 20
    ridge = sweep[sweep["label"] == "ridge"]
    assert sorted(ridge["n_train"].unique()) == [2, 3] and (ridge["gt_runs"] == ridge["n_train"] * 2).all()
    # every other estimator's row: its scores.csv vector restricted to the same held-out set
    sc = pd.read_csv(out / "scores.csv")
    truth = -sc["test_logloss_mean"].to_numpy()
    for f, n_train in ((0.34, 2), (0.5, 3)):
        for j, (_, te) in enumerate(stats.train_test_splits(6, n_train, 20, seed=1)):
            for label in ("params | none", "oneshot | inherit 50%", "sigeo | fresh"):
                r = sweep[(sweep["label"] == label) & (sweep["train_fraction"] == f) & (sweep["split"] == j)].iloc[0]
                want = stats.ranking_stats(sc[label].to_numpy()[te], truth[te], cfg.stats.top_frac)
                np.testing.assert_allclose([r["kendall"], r["spearman"], r["top"]],
                                           [want["kendall"], want["spearman"], want["top"]], equal_nan=True)
    summary = pd.read_csv(out / "sweep_summary.csv")
    assert len(summary) == (len(others) + 1) * 2 and (summary["splits"] == 20).all()


def test_sigeo_entries_share_their_terms_without_a_name_check(compared: BenchConfig) -> None:
    from recnas.estimators import SiGeo

    out = Path(compared.output)
    recs = [json.loads(x) for x in (out / "scores" / "trials.jsonl").read_text().splitlines()[1:]]
    measures = {r["measure"] for r in recs}
    terms = {r["settings"] for r in recs if r["measure"] == "sigeo_terms"}
    # one terms vector per context (fresh; inherit 0 %, 50 %), shared by both entries and the ablation
    assert len(terms) == 3 and "sigeo" not in measures and "sigeo_paper" not in measures
    sc = pd.read_csv(out / "scores.csv")
    by_ctx = {s: {r["key"]: r["values"]["v"] for r in recs if r["settings"] == s} for s in terms}
    matched = []  # the fresh context's terms give both fresh entries' scores
    for s_id, per_key in by_ctx.items():
        t = np.asarray([[np.nan if v is None else v for v in per_key[k]] for k in sc["key"]], dtype=float)
        if np.allclose(sc["sigeo | fresh"], SiGeo.combine(t, "public_criteo"), equal_nan=True):
            matched.append(s_id)
            np.testing.assert_allclose(sc["sigeo paper | fresh"], SiGeo.combine(t, "paper"))
    assert len(matched) == 1


def test_sweep_command_reproduces_the_compare_sweep_from_its_folder(compared: BenchConfig, tmp_path: Path) -> None:
    from recnas.cli import main

    src = Path(compared.output)
    pipeline = src.parent / "out.yaml"
    assert main(["bench", "sweep", str(pipeline), "--from", str(src), "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    a = pd.read_csv(src / "sweep.csv").drop(columns=TIMING)
    b = pd.read_csv(tmp_path / "s" / "sweep.csv").drop(columns=TIMING)
    pd.testing.assert_frame_equal(a, b)
    assert "## Predictors: training-set-size sweep" in (tmp_path / "s" / "sweep.md").read_text()
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["sweep.csv", "sweep.md", "sweep_kendall.png",
                                                                  "sweep_summary.csv"]
    # a pipeline without a predictor entry, or a folder without a comparison, is one clear error
    no_pred = _pipeline(tmp_path, "nopred", tmp_path / "cache", output=str(src), estimators=[{"name": "params"}])
    assert main(["bench", "sweep", str(no_pred), "--out", str(tmp_path / "t")]) == 2
    assert main(["bench", "sweep", str(pipeline), "--from", str(tmp_path / "s")]) == 2
