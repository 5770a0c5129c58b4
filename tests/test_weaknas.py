"""WeakNAS (strategy ``weaknas``): the round it runs, a planted optimum found in fewer queries than
random search over a fixed set of seeds, and a SIGKILLed search resumed through the trial store with
nothing measured twice (WeakNAS and the EmProx-guided evolution).

The planted-optimum task is a 2-block cut of the tiny space (dense ops fc / dot, sparse op efc,
sparse width 8, deep_fm off: 576 architectures) so that an exact optimum can be found at all; the
score is minus a weighted L1 distance of the one-hot encoding to a planted architecture (weights
U(0.5, 1.5)), so the planted one is the unique best.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from recnas.search.strategies import StrategyError, make_strategy
from recnas.search.weaknas import WeakNAS
from recnas.space import SearchSpace, features
from recnas.study import Study, TrialStore

REPO = Path(__file__).resolve().parents[1]

BUDGET = 100
SEEDS = range(6)  # WeakNAS repeats; random search (cheap) gets 20
WEAK = dict(predictor="gbt", predictor_params={"n_estimators": 50}, initial=10, pool=300, top=10, sample=10)


def _cut_space() -> SearchSpace:
    base = SearchSpace.load("tiny").to_dict()
    return SearchSpace.from_dict({**base, "name": "tiny_cut", "num_blocks": 2, "dense_ops": ["fc", "dot"],
                                  "sparse_ops": ["efc"], "sparse_dims": [8], "deep_fm": [False]})


def _planted(space: SearchSpace, seed: int):
    rng = np.random.default_rng([seed, 7])
    star = space.sample(rng)
    x_star = features.encode(space, star).astype(float)
    w = rng.uniform(0.5, 1.5, size=x_star.shape)
    return star.key(), lambda spec: -float(w @ np.abs(features.encode(space, spec) - x_star))


def _queries_to_find(space, name, params, seed) -> int:
    """Queries until the planted optimum is measured (BUDGET + 1: not found within the budget)."""
    key, f = _planted(space, seed)
    strat = make_strategy(name, space, seed=seed, **params)
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    while len(study.history()) < BUDGET:
        for t in study.ask_record(strat.ask(study, 10)):
            study.tell_record(t, f(t.spec))
            if t.key == key:
                return t.index + 1
    return BUDGET + 1


def test_weaknas_finds_a_planted_optimum_in_fewer_queries_than_random_search():
    """Measured (seeds 0-5): WeakNAS 26, 10, 27, 16, 23, 24 queries; random search found it within
    100 queries in 3 of 20 seeds."""
    space = _cut_space()
    assert space.size() == 576
    weak = [_queries_to_find(space, "weaknas", WEAK, s) for s in SEEDS]
    rand = [_queries_to_find(space, "random", {}, s) for s in range(20)]
    assert sum(q <= BUDGET for q in weak) == len(weak), weak  # found every time
    assert sum(q <= BUDGET for q in rand) <= 8, rand
    assert mannwhitneyu(weak, rand, alternative="less").pvalue < 0.01, (weak, rand)


class _Spy(WeakNAS):
    """Keeps each round's ranked pool."""

    def _ranked_pool(self, study, rng):
        self.last = super()._ranked_pool(study, rng)
        return self.last


def _toy(spec) -> float:
    return float(sum(b.dense_dim for b in spec.blocks) - 3 * sum(b.sparse_dim for b in spec.blocks))


def test_a_round_samples_m_unevaluated_from_the_predicted_top_n_of_a_fresh_pool():
    space = SearchSpace.load("tiny")
    strat = _Spy(space, seed=0, predictor="ridge", initial=10, pool=200, top=20, sample=5)
    assert strat.default_batch == 5
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    pools = []
    for r in range(5):
        out = strat.ask(study, 5)
        seen = {t.key for t in study.history()}
        assert len({s.key() for s in out}) == 5 and not {s.key() for s in out} & seen
        if r < 2:  # 10 initial uniform samples, in batches of 5
            assert strat.fits == 0
        else:
            pool, pred, order = strat.last
            top = {pool[i].key() for i in order[:20]}
            assert {s.key() for s in out} <= top and strat.fits == r - 1
            assert pred[order[0]] == pred.max() and len({s.key() for s in pool}) == 200
            pools.append({s.key() for s in pool})
        for t in study.ask_record(out):
            study.tell_record(t, _toy(t.spec))
    assert len(pools[0] & pools[1]) < 20  # a fresh pool every round
    # the same store gives the same proposal (state = store + seed)
    again = WeakNAS(space, seed=0, predictor="ridge", initial=10, pool=200, top=20, sample=5)
    assert [s.key() for s in again.ask(study, 5)] == [s.key() for s in strat.ask(study, 5)]

    # top-N exhausted: with N = 1 the best-predicted unevaluated ones of the pool fill in, in order
    one = _Spy(space, seed=0, predictor="ridge", initial=10, pool=200, top=1, sample=3)
    out = one.ask(study, 3)
    pool, _, order = one.last
    seen = {t.key for t in study.history()}
    assert [s.key() for s in out] == [pool[i].key() for i in order if pool[i].key() not in seen][:3]


def test_summary_reports_the_best_evaluated_and_the_predictors_top1():
    space = SearchSpace.load("tiny")
    strat = WeakNAS(space, seed=0, predictor="ridge", initial=10, pool=300, top=20, sample=10)
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    for _ in range(4):
        for t in study.ask_record(strat.ask(study, 10)):
            study.tell_record(t, _toy(t.spec))
    s = strat.summary(study)
    best = max(study.history(), key=lambda t: t.score)
    assert s["best"] == {"index": best.index, "key": best.key, "score": best.score}
    top1 = s["predicted_top1"]
    assert top1["predicted"] >= best.score - 1e-6 or top1["measured"] is not None
    assert json.loads(json.dumps(s)) == s and strat.summary(study) == s  # plain data, the same every time
    # the toy score is linear in the encoding: ridge's top-1 has the widest dense and narrowest sparse blocks
    blocks = top1["spec"]["blocks"]
    assert all(b["dense_dim"] == 16 and b["sparse_dim"] == 4 for b in blocks), blocks


def test_bad_settings_are_named():
    space = SearchSpace.load("tiny")
    with pytest.raises(ValueError, match="weaknas strategy: initial must be >= 2"):
        make_strategy("weaknas", space, initial=1)
    with pytest.raises(ValueError, match=r"weaknas strategy: need 1 <= top <= pool"):
        make_strategy("weaknas", space, top=200, pool=100)
    with pytest.raises(ValueError, match="weaknas strategy: estimator 'params' is not a predictor"):
        make_strategy("weaknas", space, predictor="params")
    with pytest.raises(ValueError, match=r"strategy 'weaknas': unknown parameters \['population'\]"):
        make_strategy("weaknas", space, population=3)
    study = Study(TrialStore.memory(), space, measure="toy", settings="")
    study.ask_record([space.sample(np.random.default_rng(0))])
    with pytest.raises(StrategyError, match=r"proposals \[0\] are not measured"):
        make_strategy("weaknas", space).ask(study, 2)
    assert make_strategy("weaknas", space).predictor == "mlp"  # the paper's weak predictor by default


# ---------------------------------------------------------------- SIGKILL and resume

_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[5])
from test_weaknas import _toy_search
_toy_search(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
"""


def _toy_search(store_path: str, log_path: str, name: str, params: dict) -> None:
    """The search loop of ``recnas search`` over 24 proposals (batches of 4) of the tiny space, with a
    toy evaluator that logs every measurement it makes to ``log_path``."""
    import types

    from recnas.search.runner import search_loop
    from recnas.study.evaluators import Evaluator, Measurement

    class Toy(Evaluator):
        measure = "toy"

        def identity(self):
            return {"toy": 1}

        def _evaluate(self, specs):
            with open(log_path, "a") as fh:  # every measurement made, across processes
                fh.writelines(s.key() + "\n" for s in specs)
            return [Measurement(_toy(s)) for s in specs]

    space = SearchSpace.load("tiny")
    store = TrialStore.open(store_path, {"test": name})
    ev = Toy()
    study = Study(store, space, measure=ev.measure, settings=ev.settings)
    search_loop(make_strategy(name, space, seed=3, **params), ev, study, 24, 4,
                types.SimpleNamespace(world_size=1, is_main=True), progress=False)
    store.close()


def _killed_search(tmp: Path, tag: str, name: str, params: dict, fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "RECNAS_FAULT": fault}
    return subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp / f"{tag}.jsonl"), str(tmp / f"{tag}.log"), name,
                           json.dumps(params), str(Path(__file__).parent)], env=env, capture_output=True, text=True,
                          timeout=240)


def _trials(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()[1:]) if r["type"] == "trial"]


@pytest.fixture(scope="module")
def emprox_cache(tmp_path_factory) -> str:
    from recnas.estimators import make_estimator

    cache = tmp_path_factory.mktemp("emprox")
    make_estimator("emprox", unlabelled=300, epochs=2, cache_dir=str(cache)).autoencoder(SearchSpace.load("tiny"))
    return str(cache)


@pytest.mark.parametrize("name", ["weaknas", "guided_evolution"])
def test_a_killed_search_resumes_through_the_store_with_nothing_measured_twice(tmp_path, name, emprox_cache):
    """A search subprocess SIGKILLed right after its 13th measurement is recorded (fault point
    ``search.trial``, mid-round), then run again (here), ends with the uninterrupted run's records;
    every architecture was measured once over both processes."""
    params = (dict(predictor="mlp", predictor_params={"hidden_layer_sizes": [32, 32], "max_iter": 50}, initial=8,
                   pool=100, top=10, sample=4) if name == "weaknas" else
              dict(predictor="emprox", predictor_params={"unlabelled": 300, "epochs": 2, "cache_dir": emprox_cache},
                   population=8, sample=4, children=4, candidates=16))
    _toy_search(str(tmp_path / "ref.jsonl"), str(tmp_path / "ref.log"), name, params)
    ref = _trials(tmp_path / "ref.jsonl")
    assert [t["index"] for t in ref] == list(range(24))

    r = _killed_search(tmp_path, "cut", name, params, fault="search.trial:13")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert len(_trials(tmp_path / "cut.jsonl")) == 13
    _toy_search(str(tmp_path / "cut.jsonl"), str(tmp_path / "cut.log"), name, params)  # run again
    resumed = _trials(tmp_path / "cut.jsonl")
    assert [(t["key"], t["score"]) for t in resumed] == [(t["key"], t["score"]) for t in ref]
    measured = (tmp_path / "cut.log").read_text().split()
    assert sorted(measured) == sorted(t["key"] for t in ref if not t["cached"])  # none twice, none lost
    asked = [x for x in map(json.loads, (tmp_path / "cut.jsonl").read_text().splitlines()[1:]) if x["type"] == "asked"]
    assert len(asked) == 24  # nothing asked twice
