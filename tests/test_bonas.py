"""BONAS (recnas.predictors.bonas, strategy ``bonas``): the Bayesian linear regression against
scikit-learn's BayesianRidge, the UCB against its formula, the GCN embedding's invariance to node
numbering, a planted optimum found in fewer queries than random search over a fixed set of seeds,
and a SIGKILLed search resumed through the trial store with nothing measured twice.

The planted-optimum task and the kill harness are test_weaknas.py's.
"""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu
from sklearn.linear_model import BayesianRidge
from test_weaknas import BUDGET, _cut_space, _killed_search, _queries_to_find, _toy_search, _trials

from recnas.estimators import make_estimator
from recnas.predictors import BONAS
from recnas.predictors.bonas import GCN, BayesianLinearRegression, normalise_adjacency, sigmoid_moments, ucb
from recnas.search.bonas import BONASSearch
from recnas.search.strategies import StrategyError, make_strategy
from recnas.space import SearchSpace, features
from recnas.study import Study, TrialStore

FAST = dict(epochs=30, lr=1e-2)  # a quick surrogate for the tests that do not judge its quality


def _toy(spec) -> float:
    return float(sum(b.dense_dim for b in spec.blocks) - 3 * sum(b.sparse_dim for b in spec.blocks))


@pytest.fixture(scope="module")
def fitted():
    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(0)
    specs = list({s.key(): s for s in (space.sample(rng) for _ in range(80))}.values())
    y = np.array([_toy(s) for s in specs])
    return space, specs, y, make_estimator("bonas", **FAST).fit(specs[:60], y[:60], space=space)


# ---------------------------------------------------------------- Bayesian linear regression


@pytest.mark.parametrize("n, d", [(80, 12), (15, 40)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_blr_matches_sklearn_bayesian_ridge(n, d, fit_intercept):
    """alpha (weight precision) = BayesianRidge.lambda_, beta (noise) = its alpha_, the posterior
    mean and covariance, the intercept, the predictive mean and std, on the same features."""
    rng = np.random.default_rng(n + d)
    Phi = np.maximum(rng.normal(size=(n, d)), 0) + 0.3  # ReLU-like, with a non-zero mean
    t = Phi[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.4 + 0.3 * rng.normal(size=n)
    ours = BayesianLinearRegression(fit_intercept=fit_intercept).fit(Phi, t)
    ref = BayesianRidge(fit_intercept=fit_intercept).fit(Phi, t)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.alpha_ == pytest.approx(ref.lambda_, rel=1e-6)
    assert ours.beta_ == pytest.approx(ref.alpha_, rel=1e-6)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.sigma_, ref.sigma_, rtol=1e-6, atol=1e-10)
    assert ours.intercept_ == pytest.approx(ref.intercept_, rel=1e-6, abs=1e-9)
    test = np.maximum(rng.normal(size=(30, d)), 0) + 0.3
    mu, var = ours.predict(test)
    ref_mu, ref_std = ref.predict(test, return_std=True)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.sqrt(var), ref_std, rtol=1e-6)


def test_blr_without_hyperpriors_is_the_evidence_fixed_point():
    """With the Gamma hyperpriors at 0, the result satisfies alpha = gamma / |m|^2 and
    beta = (N - gamma) / SSE (evidence maximisation), and agrees with BayesianRidge at 0 too."""
    rng = np.random.default_rng(3)
    Phi = rng.normal(size=(60, 8))
    t = Phi @ rng.normal(size=8) + 0.5 * rng.normal(size=60)
    b = BayesianLinearRegression(fit_intercept=False, tol=1e-12, max_iter=2000, alpha_1=0, alpha_2=0, lambda_1=0,
                                 lambda_2=0).fit(Phi, t)
    lam = np.linalg.eigvalsh(Phi.T @ Phi)
    gamma = np.sum(b.beta_ * lam / (b.alpha_ + b.beta_ * lam))
    assert b.alpha_ == pytest.approx(gamma / np.sum(b.coef_ ** 2), rel=1e-8)
    assert b.beta_ == pytest.approx((60 - gamma) / np.sum((t - Phi @ b.coef_) ** 2), rel=1e-8)
    ref = BayesianRidge(fit_intercept=False, tol=1e-12, max_iter=2000, alpha_1=0, alpha_2=0, lambda_1=0,
                        lambda_2=0).fit(Phi, t)
    assert (b.alpha_, b.beta_) == (pytest.approx(ref.lambda_, rel=1e-8), pytest.approx(ref.alpha_, rel=1e-8))


def test_the_surrogates_blr_is_bayesian_ridge_on_its_embeddings_and_logit_targets(fitted):
    space, specs, y, p = fitted
    phi = p.embed(specs[:60])
    assert phi.shape == (60, 64) and np.isfinite(phi).all()
    u = (y[:60] - p.lo_) / p.span_
    assert 0 < u.min() and u.max() < 1
    ref = BayesianRidge().fit(phi, np.log(u / (1 - u)))
    assert p.blr_.alpha_ == pytest.approx(ref.lambda_, rel=1e-5) and p.blr_.beta_ == pytest.approx(ref.alpha_, rel=1e-5)
    mu, var = p.latent(specs[60:])
    ref_mu, ref_std = ref.predict(p.embed(specs[60:]), return_std=True)
    np.testing.assert_allclose(mu, ref_mu, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sqrt(var), ref_std, rtol=1e-5)
    # minmax with margin 0.1: the training targets span [0.1/1.2, 1.1/1.2] of (0, 1)
    assert u.min() == pytest.approx(0.1 / 1.2) and u.max() == pytest.approx(1.1 / 1.2)


# ---------------------------------------------------------------- acquisition


def test_ucb_is_its_formula_and_close_to_quadrature(fitted):
    mu = np.array([-3.0, -1.0, 0.0, 0.5, 2.5, 2.5])
    var = np.array([0.0, 0.25, 1.0, 4.0, 0.01, 0.0])
    k = 1.0 / np.sqrt(1.0 + math.pi * var / 8.0)
    e = 1.0 / (1.0 + np.exp(-k * mu))
    np.testing.assert_allclose(ucb(mu, var), e + 0.5 * np.sqrt(e * (1 - e) * (1 - k)), rtol=1e-12)
    np.testing.assert_allclose(ucb(mu, var, kappa=2.0), e + 2.0 * np.sqrt(e * (1 - e) * (1 - k)), rtol=1e-12)
    assert ucb(mu, var)[-1] == pytest.approx(1 / (1 + math.exp(-2.5)))  # no variance: no bonus
    # E[sigmoid(f)] and Std[sigmoid(f)], f ~ N(mu, var), by 80-point Gauss-Hermite quadrature
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    s = 1.0 / (1.0 + np.exp(-(mu[:, None] + np.sqrt(var)[:, None] * x)))
    q_e = s @ w
    q_std = np.sqrt(np.maximum((s * s) @ w - q_e ** 2, 0))
    a_e, a_var = sigmoid_moments(mu, var)
    np.testing.assert_allclose(a_e, q_e, atol=0.005)
    np.testing.assert_allclose(np.sqrt(a_var), q_std, atol=0.035)
    # the predictor's ucb is the formula on its latent Gaussian; predict / predict_std are E / Std in y's units
    space, specs, y, p = fitted
    m, v = p.latent(specs[60:])
    np.testing.assert_allclose(p.ucb(specs[60:]), ucb(m, v), rtol=1e-12)
    e, ev = sigmoid_moments(m, v)
    np.testing.assert_allclose(p.predict(specs[60:]), e * p.span_ + p.lo_, rtol=1e-12)
    np.testing.assert_allclose(p.predict_std(specs[60:]), np.sqrt(ev) * p.span_, rtol=1e-12)
    assert (p.predict_std(specs[60:]) > 0).all()


# ---------------------------------------------------------------- GCN


def test_gcn_embedding_is_invariant_to_a_relabelling_of_the_nodes(fitted):
    space, specs, _, p = fitted
    A, X = features.graphs(space, specs[:8])
    rng = np.random.default_rng(5)
    nets = [p.net_, GCN(X.shape[-1], features.graph_node_types(space).index("global"))]  # trained and untrained
    for net in nets:
        net.eval()
        with torch.no_grad():
            ref = net.embed(normalise_adjacency(A), torch.from_numpy(X)).numpy()
            for perm in (np.arange(A.shape[1])[::-1], rng.permutation(A.shape[1]), rng.permutation(A.shape[1])):
                Ap, Xp = A[:, perm][:, :, perm], X[:, perm]
                got = net.embed(normalise_adjacency(Ap), torch.from_numpy(np.ascontiguousarray(Xp))).numpy()
                np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        assert np.abs(ref[0] - ref[1]).max() > 1e-4  # different architectures, different embeddings


# ---------------------------------------------------------------- the strategy


def test_bonas_finds_a_planted_optimum_in_fewer_queries_than_random_search():
    """Measured (seeds 0-5, the surrogate's defaults, pool 300, k 10, 10 initial samples):
    BONAS 45, 10, 26, 11, 41, 22 queries; random search found it within 100 queries in 3 of 20 seeds."""
    space = _cut_space()
    bo = [_queries_to_find(space, "bonas", dict(initial=10, pool=300, k=10), s) for s in range(6)]
    rand = [_queries_to_find(space, "random", {}, s) for s in range(20)]
    assert sum(q <= BUDGET for q in bo) == len(bo), bo  # found every time
    assert sum(q <= BUDGET for q in rand) <= 8, rand
    assert mannwhitneyu(bo, rand, alternative="less").pvalue < 0.01, (bo, rand)


class _Spy(BONASSearch):
    def _scored_pool(self, study, rng, seen):
        self.last = super()._scored_pool(study, rng, seen)
        return self.last


def test_a_round_measures_the_top_k_by_ucb_of_a_fresh_unmeasured_pool():
    space = SearchSpace.load("tiny")
    strat = _Spy(space, seed=0, predictor_params=FAST, initial=10, pool=150, k=5)
    assert strat.default_batch == 5
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    pools = []
    for r in range(4):
        out = strat.ask(study, 5)
        seen = {t.key for t in study.history()}
        assert len({s.key() for s in out}) == 5 and not {s.key() for s in out} & seen
        if r < 2:
            assert strat.fits == 0
        else:
            pool, acq = strat.last
            assert not {s.key() for s in pool} & seen and len({s.key() for s in pool}) == 150
            order = np.argsort(-acq, kind="stable")
            assert [s.key() for s in out] == [pool[i].key() for i in order[:5]]
            pools.append({s.key() for s in pool})
        for t in study.ask_record(out):
            study.tell_record(t, _toy(t.spec), seconds=0.5, train_runs=1)
    assert len(pools[0] & pools[1]) < 30  # a fresh pool every round
    again = BONASSearch(space, seed=0, predictor_params=FAST, initial=10, pool=150, k=5)
    assert [s.key() for s in again.ask(study, 5)] == [s.key() for s in strat.ask(study, 5)]  # state = store + seed
    s = again.summary(study)
    assert json.loads(json.dumps(s)) == s and again.summary(study) == s
    assert [(r["kind"], r["proposals"], r["seconds"], r["train_runs"]) for r in s["rounds"]] == \
        [("initial", 5, 2.5, 5)] * 2 + [("ucb", 5, 2.5, 5)] * 2
    best = max(study.history(), key=lambda t: t.score)
    assert s["best"]["score"] == best.score == s["rounds"][-1]["best"]
    assert s["predicted_top1"]["std"] > 0


def test_bad_settings_are_named():
    space = SearchSpace.load("tiny")
    with pytest.raises(ValueError, match="bonas strategy: initial must be >= 2"):
        make_strategy("bonas", space, initial=1)
    with pytest.raises(ValueError, match=r"bonas strategy: need 1 <= k <= pool"):
        make_strategy("bonas", space, k=200, pool=100)
    with pytest.raises(ValueError, match=r"strategy 'bonas': unknown parameters \['top'\]"):
        make_strategy("bonas", space, top=3)
    with pytest.raises(ValueError, match=r"estimator 'bonas': unknown parameters \['depth'\]"):
        make_strategy("bonas", space, predictor_params={"depth": 3})
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    study.ask_record([space.sample(np.random.default_rng(0))])
    with pytest.raises(StrategyError, match=r"proposals \[0\] are not measured"):
        make_strategy("bonas", space).ask(study, 2)
    s = make_strategy("bonas", space)
    assert (s.initial, s.pool, s.k, s.kappa) == (100, 10000, 100, 0.5)  # the paper's
    p = BONAS()
    assert (p.width, p.layers, p.epochs, p.lr, p.batch_size) == (64, 4, 100, 1e-3, 128)
    specs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    with pytest.raises(ValueError, match=r"target='unit' needs every score in \(0, 1\)"):
        BONAS(target="unit", epochs=1).fit(specs, [0.2, 0.5, 1.5, 0.3], space=space)
    assert BONAS(target="unit", epochs=1).fit(specs, [0.2, 0.5, 0.9, 0.3], space=space).span_ == 1.0


@pytest.mark.timeout(300)
def test_a_killed_search_resumes_through_the_store_with_nothing_measured_twice(tmp_path):
    """test_weaknas.py's harness: a search subprocess SIGKILLed right after its 13th measurement is
    recorded, then run again, ends with the uninterrupted run's records; nothing measured twice."""
    params = dict(predictor_params=FAST, initial=8, pool=100, k=4)
    _toy_search(str(tmp_path / "ref.jsonl"), str(tmp_path / "ref.log"), "bonas", params)
    ref = _trials(tmp_path / "ref.jsonl")
    assert [t["index"] for t in ref] == list(range(24))
    r = _killed_search(tmp_path, "cut", "bonas", params, fault="search.trial:13")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert len(_trials(tmp_path / "cut.jsonl")) == 13
    _toy_search(str(tmp_path / "cut.jsonl"), str(tmp_path / "cut.log"), "bonas", params)
    resumed = _trials(tmp_path / "cut.jsonl")
    assert [(t["key"], t["score"]) for t in resumed] == [(t["key"], t["score"]) for t in ref]
    measured = (tmp_path / "cut.log").read_text().split()
    assert sorted(measured) == sorted(t["key"] for t in ref if not t["cached"])
    asked = [x for x in map(json.loads, (tmp_path / "cut.jsonl").read_text().splitlines()[1:]) if x["type"] == "asked"]
    assert len(asked) == 24
