"""The ranking statistics against scipy on known data, and the bootstrap's behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from recnas.bench.stats import (
    bootstrap_ci,
    compare,
    kendall,
    noise_ceiling,
    spearman,
    top_k_precision,
)


def _noisy(n: int, noise: float, seed: int, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n)
    pred = truth + noise * rng.normal(size=n)
    if ties:
        truth, pred = np.round(truth, 0), np.round(pred, 0)
    return pred, truth


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_and_kendall_match_scipy(seed: int, ties: bool) -> None:
    pred, truth = _noisy(40, 0.8, seed, ties=ties)
    assert spearman(pred, truth) == pytest.approx(sps.spearmanr(pred, truth).statistic, abs=1e-12)
    tau = sps.kendalltau(pred, truth, variant="b").statistic
    assert kendall(pred, truth) == pytest.approx(tau, abs=1e-12)


def test_known_values() -> None:
    truth = np.arange(5.0)
    assert spearman(truth, truth) == 1.0 and kendall(truth, truth) == 1.0
    assert spearman(-truth, truth) == -1.0 and kendall(-truth, truth) == -1.0
    # one swapped adjacent pair among 5: tau = (9 - 1) / 10
    assert kendall([0, 1, 2, 4, 3], truth) == pytest.approx(0.8)
    assert np.isnan(kendall(np.ones(5), truth)) and np.isnan(spearman(np.ones(5), truth))


def test_top_k_precision() -> None:
    truth = np.arange(20.0)  # best are 19, 18
    pred = truth.copy()
    assert top_k_precision(pred, truth, frac=0.1) == 1.0
    pred[19] = -1.0  # the best is predicted worst: top-2 by pred = {18, 17}
    assert top_k_precision(pred, truth, frac=0.1) == 0.5
    assert top_k_precision(-truth, truth, frac=0.1) == 0.0
    with pytest.raises(ValueError, match="frac"):
        top_k_precision(pred, truth, frac=0.0)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="pred has 3 values but truth has 4"):
        spearman([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"truth contains NaN at positions \[1\]"):
        kendall([1, 2, 3], [1, np.nan, 3])


def test_bootstrap_contains_estimate_and_shrinks_with_n() -> None:
    widths = []
    for n in (20, 80, 320):
        pred, truth = _noisy(n, 1.0, seed=n)
        for metric in (spearman, kendall):
            lo, hi = bootstrap_ci(metric, pred, truth, n_boot=300, seed=0)
            assert lo <= metric(pred, truth) <= hi
        lo, hi = bootstrap_ci(kendall, pred, truth, n_boot=300, seed=0)
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    # seeded: same interval twice
    assert bootstrap_ci(spearman, pred, truth, n_boot=50, seed=3) == bootstrap_ci(
        spearman, pred, truth, n_boot=50, seed=3
    )


def test_noise_ceiling_is_the_seed_to_seed_statistic() -> None:
    a, b = _noisy(30, 0.5, seed=7)
    assert noise_ceiling(a, b) == pytest.approx(sps.kendalltau(a, b).statistic)
    assert noise_ceiling(a, b, metric=spearman) == pytest.approx(sps.spearmanr(a, b).statistic)


def test_compare_table() -> None:
    rng = np.random.default_rng(0)
    n = 30
    quality = rng.normal(size=n)
    logloss = np.stack([0.44 - 0.01 * quality + 0.003 * rng.normal(size=n) for _ in range(2)], 1)
    scores = {"good": quality + 0.1 * rng.normal(size=n), "random": rng.normal(size=n)}
    df = compare(scores, logloss, seconds={"good": 1.5}, n_boot=200)
    assert list(df.index) == ["good", "random"]
    truth = -logloss.mean(1)
    assert df.loc["good", "kendall"] == pytest.approx(kendall(scores["good"], truth))
    assert df.loc["good", "kendall"] > 0.5 > df.loc["random", "kendall"]
    ceiling = kendall(-logloss[:, 0], -logloss[:, 1])
    assert df.loc["good", "kendall_ceiling"] == pytest.approx(ceiling)
    assert df.loc["good", "kendall_frac"] == pytest.approx(df.loc["good", "kendall"] / ceiling)
    assert df.loc["good", "seconds"] == 1.5 and np.isnan(df.loc["random", "seconds"])
    for m in ("spearman", "kendall", "top"):
        assert (df[f"{m}_lo"] <= df[m]).all() and (df[m] <= df[f"{m}_hi"]).all()
    with pytest.raises(ValueError, match="'bad'"):
        compare({"bad": np.r_[np.nan, np.ones(n - 1)]}, logloss)
    with pytest.raises(ValueError, match="'short'"):
        compare({"short": np.ones(3)}, logloss)
    # a given ceiling (e.g. of seed-averaged halves) replaces the seed-pair mean
    given = compare(scores, logloss, n_boot=20, ceilings={"kendall": 0.8, "spearman": 0.9})
    assert given.loc["good", "kendall_ceiling"] == 0.8
    assert given.loc["good", "kendall_frac"] == pytest.approx(given.loc["good", "kendall"] / 0.8)
    assert given.loc["good", "spearman_frac"] == pytest.approx(given.loc["good", "spearman"] / 0.9)
    with pytest.raises(ValueError, match=r"ceilings lacks \['spearman'\]"):
        compare(scores, logloss, ceilings={"kendall": 0.8})


@pytest.mark.parametrize("k", [2, 4, 5, 8])
def test_ceiling_table_pairs_and_halves_match_scipy(k: int) -> None:
    """Every seed pair, the even/odd halves and the average over all splits into halves, each
    recomputed here with scipy from the per-seed log losses."""
    from itertools import combinations
    from types import SimpleNamespace

    from recnas.bench.compare import ceiling_table

    rng = np.random.default_rng(k)
    n = 25
    quality = rng.normal(size=n)
    ll = 0.5 + 0.01 * (quality[:, None] + rng.normal(scale=1.5, size=(n, k)))
    seeds = tuple(range(10, 10 + k))
    cfg = SimpleNamespace(train=SimpleNamespace(seeds=seeds), stats=SimpleNamespace(n_boot=40, alpha=0.05, seed=0))
    t = ceiling_table(ll, cfg)
    tau = lambda a, b: sps.kendalltau(a, b).statistic  # noqa: E731
    rho = lambda a, b: sps.spearmanr(a, b).statistic  # noqa: E731

    pairs = t[t["kind"] == "seed pair"]
    assert len(pairs) == k * (k - 1) // 2
    assert pairs["comparison"].iloc[0] == "seed 10 vs seed 11"
    for (i, j), (_, r) in zip([(0, 1)] + [p for p in combinations(range(k), 2) if p != (0, 1)], pairs.iterrows()):
        assert r["comparison"] == f"seed {seeds[i]} vs seed {seeds[j]}"
        assert r["kendall"] == pytest.approx(tau(ll[:, i], ll[:, j]), abs=1e-12)
        assert r["spearman"] == pytest.approx(rho(ll[:, i], ll[:, j]), abs=1e-12)
        assert r["kendall_lo"] <= r["kendall"] <= r["kendall_hi"]
    if k < 4:
        assert set(t["kind"]) == {"seed pair"}
        return
    halves = t[t["kind"] == "halves"].iloc[0]
    even, odd = ll[:, 0::2].mean(axis=1), ll[:, 1::2].mean(axis=1)
    assert halves["kendall"] == pytest.approx(tau(even, odd), abs=1e-12)
    every = t[t["kind"] == "all halves"].iloc[0]
    half = k // 2
    splits = {frozenset(c) for c in combinations(range(k), half)}
    if k % 2 == 0:  # a split and its complement are one split
        splits = {min(c, frozenset(range(k)) - c, key=lambda s: sorted(s)) for c in splits}
    taus = [tau(ll[:, sorted(c)].mean(axis=1), ll[:, sorted(set(range(k)) - c)].mean(axis=1)) for c in splits]
    assert f"all {len(splits)} splits" in every["comparison"]
    assert len(splits) == {4: 3, 5: 10, 8: 35}[k]
    assert every["kendall"] == pytest.approx(np.mean(taus), abs=1e-12)
    assert (every["kendall_lo"], every["kendall_hi"]) == pytest.approx((min(taus), max(taus)), abs=1e-12)
    # averaging seeds removes noise: the halves agree better than single seeds do, on average
    assert every["kendall"] > pairs["kendall"].mean()
    # in between: two disjoint m-seed means, m = 2 .. k/2 - 1 (k even) or k // 2 (k odd)
    disjoint = t[t["kind"] == "disjoint means"]
    ms = list(range(2, (k // 2 - 1 if k % 2 == 0 else k // 2) + 1))
    assert list(disjoint["seeds_per_side"]) == ms
    for m, (_, r) in zip(ms, disjoint.iterrows()):
        both = [(set(a), set(b)) for a in combinations(range(k), m) for b in combinations(range(k), m)
                if not set(a) & set(b) and a < b]
        vals = [tau(ll[:, sorted(a)].mean(axis=1), ll[:, sorted(b)].mean(axis=1)) for a, b in both]
        assert f"all {len(both)} disjoint pairs" in r["comparison"]
        assert r["kendall"] == pytest.approx(np.mean(vals), abs=1e-12)
        assert r["kendall_hi"] == pytest.approx(max(vals), abs=1e-12)
    assert list(t.loc[t["kind"] == "all halves", "seeds_per_side"]) == [k // 2]
    # and judge divides by that ceiling (the truth is the mean of all k seeds)
    from recnas.bench.compare import ScoreSet, judge

    cfg.stats.top_frac = 0.1
    sets = [ScoreSet("q", "q", "estimator", "none", float("nan"), quality, 1.0)]
    res = judge(sets, ll, cfg, t).set_index("label")
    assert res.loc["q", "kendall_ceiling"] == pytest.approx(every["kendall"])
    assert res.loc["q", "kendall"] == pytest.approx(tau(quality, -ll.mean(axis=1)), abs=1e-12)
    assert res.loc["q", "kendall_frac"] == pytest.approx(res.loc["q", "kendall"] / every["kendall"])
    assert judge(sets, ll, cfg).loc[0, "kendall_ceiling"] == pytest.approx(pairs["kendall"].mean())


def test_ceiling_table_samples_the_splits_of_many_seeds() -> None:
    """Past MAX_SEED_SPLITS splits (16 seeds: 6,435 halvings), a seeded random subset is averaged."""
    from types import SimpleNamespace

    from recnas.bench.compare import MAX_SEED_SPLITS, ceiling_table

    rng = np.random.default_rng(1)
    k, n = 16, 15
    ll = 0.5 + 0.01 * (rng.normal(size=(n, 1)) + rng.normal(size=(n, k)))
    cfg = SimpleNamespace(train=SimpleNamespace(seeds=tuple(range(k))), stats=SimpleNamespace(n_boot=5, alpha=0.05, seed=0))
    t = ceiling_table(ll, cfg)
    every = t[t["kind"] == "all halves"].iloc[0]
    assert f"over {MAX_SEED_SPLITS} random splits" in every["comparison"]
    assert every["kendall_lo"] <= every["kendall"] <= every["kendall_hi"]
    big = t[(t["kind"] == "disjoint means") & (t["seeds_per_side"] == 7)].iloc[0]
    assert f"over {MAX_SEED_SPLITS} random disjoint pairs" in big["comparison"]
    small = t[(t["kind"] == "disjoint means") & (t["seeds_per_side"] == 2)].iloc[0]
    assert f"over {MAX_SEED_SPLITS} random disjoint pairs" in small["comparison"]  # 5,460 > MAX_SEED_SPLITS
    pd.testing.assert_frame_equal(t, ceiling_table(ll, cfg))  # seeded
