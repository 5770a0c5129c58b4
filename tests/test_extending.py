"""Extending recnas (README, "Extending recnas"): a toy estimator, predictor, search strategy, op and
dataset format, each added in this file and used through the real machinery.

Estimators, predictors and strategies are registries: defining a subclass with a ``name`` registers it.
The toy classes are defined inside the tests and their names are removed from the registries after
each test (fixture ``_toys_unregistered``), so other tests see only the built-in ones. Ops and dataset
formats are not registries: the toy op and format are wired in with ``monkeypatch`` at exactly the
places the README says must be edited, and are unwired when the test ends.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from recnas.config import ConfigError
from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.estimators import ESTIMATORS, Estimator, ScoringContext, make_estimator
from recnas.predictors import Predictor, as_matrix
from recnas.search.config import load_pipeline
from recnas.search.runner import search_loop
from recnas.search.strategies import STRATEGIES, PredictorGuided, Strategy, make_strategy
from recnas.space import SearchSpace
from recnas.space.features import encoding_size
from recnas.space.spec import ArchSpec, BlockSpec, SpecError
from recnas.study import Study, TrialStore
from recnas.study.evaluators import ProxyEvaluator

TOY_ESTIMATORS = ("toy_neg_loss", "toy_knn")
TOY_STRATEGIES = ("toy_greedy",)

FM = FeatureMap(
    "toy",
    dense=tuple(DenseFeature(f"I{i}") for i in range(2)),
    sparse=tuple(SparseFeature(f"C{i}", 30 + 5 * i) for i in range(3)),
)


@pytest.fixture(autouse=True)
def _toys_unregistered():
    """No toy name is registered before a test, and none is left registered after it."""
    assert not set(TOY_ESTIMATORS) & set(ESTIMATORS) and not set(TOY_STRATEGIES) & set(STRATEGIES)
    try:
        yield
    finally:
        for name in TOY_ESTIMATORS:
            ESTIMATORS.pop(name, None)
        for name in TOY_STRATEGIES:
            STRATEGIES.pop(name, None)


def _pipeline(tmp_path: Path, d: dict[str, Any]) -> Path:
    p = tmp_path / "pipeline.yaml"
    p.write_text(yaml.safe_dump(d, sort_keys=False))
    return p


def _toy_quality(spec: ArchSpec) -> float:
    """A made-up "higher is better" measurement: wide dense blocks, few sparse fields."""
    return float(sum(b.dense_dim for b in spec.blocks) - 3 * sum(b.sparse_dim for b in spec.blocks))


# -- 1. an estimator ------------------------------------------------------------------------------


def _define_toy_estimator() -> type[Estimator]:
    class NegLoss(Estimator):
        """Minus the mean log loss of the candidate on its first ``batches`` scoring minibatches."""

        name = "toy_neg_loss"  # registers the class in ESTIMATORS
        # the default flags: needs_weights = True, needs_supernet = False, needs_fit = False

        def __init__(self, batches: int = 1) -> None:
            self.batches = batches

        def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
            cand = ctx.candidate(spec)  # the dense part with fresh or inherited weights, and its inputs
            with torch.no_grad():
                losses = [F.binary_cross_entropy_with_logits(cand.module(b.dense, b.emb), b.labels)
                          for b in cand.batches[: self.batches]]
            return -float(torch.stack(losses).mean())

    return NegLoss


def test_a_toy_estimator_is_registered_and_scores_on_a_real_context(tmp_path: Path) -> None:
    from recnas.bench.config import EstimatorEntry
    from recnas.models import Supernet

    cls = _define_toy_estimator()
    assert ESTIMATORS["toy_neg_loss"] is cls
    est = make_estimator("toy_neg_loss", batches=2)
    assert est.get_params() == {"batches": 2} and est.clone().get_params() == {"batches": 2}
    with pytest.raises(ValueError, match=r"unknown parameters \['lr'\]; allowed parameters are \['batches'\]"):
        make_estimator("toy_neg_loss", lr=0.1)

    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(0)
    specs = [space.sample(rng) for _ in range(4)]
    g = torch.Generator().manual_seed(5)
    batches = [random_batch(FM, 32, g) for _ in range(2)]
    torch.manual_seed(0)
    net = Supernet(FM, space)

    # inherited weights: the score is minus the supernet's own log loss of that architecture
    ctx = ScoringContext(FM, batches, supernet=net, init="inherit", device="cpu")
    got = make_estimator("toy_neg_loss", batches=1).score(specs, ctx)
    with torch.no_grad():
        want = [-F.binary_cross_entropy_with_logits(
            net(batches[0].dense_features, batches[0].sparse_features, s), batches[0].labels).item() for s in specs]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert len(set(got.round(6))) == len(specs)  # different architectures, different scores

    # fresh weights (zero-shot), seeded per architecture: deterministic
    fresh = ScoringContext(FM, batches, init="fresh", seed=3, device="cpu")
    a = est.score(specs, fresh)
    np.testing.assert_array_equal(a, est.score(specs, ScoringContext(FM, batches, init="fresh", seed=3, device="cpu")))
    assert a.dtype == np.float64 and np.isfinite(a).all()

    # the search measures it through an evaluator; the bench reads its capability flags
    ev = ProxyEvaluator(est, fresh, identity={"data": "toy"})
    assert [m.score for m in ev.evaluate(specs)] == list(a)
    assert ev.measure == "toy_neg_loss" and ev.identity()["params"] == {"batches": 2}
    assert EstimatorEntry("toy_neg_loss").resolved_inits() == ("inherit", "fresh")

    # and a pipeline file may name it
    cfg = load_pipeline(_pipeline(tmp_path, {"space": "tiny", "estimator": {"name": "toy_neg_loss",
                                                                            "params": {"batches": 2}}}))
    assert cfg.estimator.name == "toy_neg_loss"
    with pytest.raises(ConfigError, match="toy_neg_loss.*unknown parameters"):
        load_pipeline(_pipeline(tmp_path, {"estimator": {"name": "toy_neg_loss", "params": {"lr": 1}}}))


# -- 2. a predictor -------------------------------------------------------------------------------


def _define_toy_predictor() -> type[Predictor]:
    class KNN(Predictor):
        """k-nearest neighbours (scikit-learn) on the one-hot encoding."""

        name = "toy_knn"  # a registered estimator with needs_fit = True, needs_weights = False

        def __init__(self, k: int = 3, space: Any = None) -> None:
            self.k = k
            self.space = space

        def _fit(self, X: Any, y: np.ndarray) -> None:
            from sklearn.neighbors import KNeighborsRegressor

            self.model_ = KNeighborsRegressor(n_neighbors=min(self.k, len(y))).fit(as_matrix(X), y)

        def _predict(self, X: Any) -> np.ndarray:
            return self.model_.predict(as_matrix(X))

    return KNN


def test_a_toy_predictor_fits_is_judged_by_the_sweep_and_drives_a_search(tmp_path: Path) -> None:
    from recnas.bench.compare import predictor_sweep
    from recnas.bench.config import EstimatorEntry, PredictorSection

    cls = _define_toy_predictor()
    assert ESTIMATORS["toy_knn"] is cls and cls.needs_fit and not cls.needs_weights
    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(1)
    specs = list({s.key(): s for s in (space.sample(rng) for _ in range(40))}.values())[:30]
    y = np.array([_toy_quality(s) for s in specs])

    # fit / predict on the featurized architectures (one row of the one-hot encoding each)
    knn = make_estimator("toy_knn", k=1)
    assert knn.features(specs, space).shape == (len(specs), encoding_size(space))
    with pytest.raises(RuntimeError, match="must be fit"):
        knn.predict(specs)
    assert knn.fit(specs, y, space=space) is knn and knn.is_fitted_
    np.testing.assert_array_equal(knn.predict(specs), y)  # 1-NN of a training architecture is itself
    np.testing.assert_array_equal(knn.score(specs, None), y)
    with pytest.raises(NotImplementedError, match="no predictive std"):
        knn.predict_std(specs)

    # `recnas bench`: judged by the training-set-size sweep on held-out architectures
    assert EstimatorEntry("toy_knn").needs_fit and EstimatorEntry("toy_knn").resolved_inits() == ("none",)
    ll = 0.5 - 0.001 * y[:, None] + 0.0001 * np.random.default_rng(2).normal(size=(len(specs), 2))
    section = PredictorSection(train_fractions=(0.2, 0.5), splits=3, seed=0)
    sweep = predictor_sweep({"knn": make_estimator("toy_knn")}, specs, ll, [], section, space=space)
    assert len(sweep) == 2 * 3 and (sweep["kind"] == "predictor").all()
    assert list(sweep["n_train"]) == [6] * 3 + [15] * 3 and (sweep["gt_runs"] == 2 * sweep["n_train"]).all()
    assert sweep["kendall"].between(-1, 1).all() and sweep["kendall"].mean() > 0.1  # deterministic: 0.25

    # the `predictor` strategy fits it on everything measured so far, through a study on a store
    def run(study: Study, strategy: PredictorGuided, n: int) -> Study:
        while len(study.history()) < n:
            for t in study.ask_record(strategy.ask(study, 4)):
                study.tell_record(t, _toy_quality(t.spec))
        return study

    params = dict(predictor="toy_knn", predictor_params={"k": 2}, initial=8, pool=60)
    strat = make_strategy("predictor", space, seed=0, **params)
    full = run(Study(TrialStore.memory(), space, measure="toy", settings=""), strat, 24)
    assert strat.fits == 4  # asks 3..6 (8 measured = initial) fitted the predictor
    keys = [t.key for t in full.history()]
    assert len(set(keys)) == len(keys) == 24
    scores = [t.score for t in full.history()]
    assert np.mean(scores[8:]) > np.mean(scores[:8])  # the predictor's picks beat the uniform samples
    # a fresh instance continues a cut study from the store alone
    cut = run(Study(TrialStore.memory(), space, measure="toy", settings=""),
              make_strategy("predictor", space, seed=0, **params), 12)
    cont = run(cut, make_strategy("predictor", space, seed=0, **params), 24)
    assert [t.key for t in cont.history()] == keys

    # configured in a pipeline file as search: {strategy: predictor, params: {predictor: NAME}}
    cfg = load_pipeline(_pipeline(tmp_path, {"space": "tiny", "search": {
        "strategy": "predictor", "params": {"predictor": "toy_knn", "predictor_params": {"k": 2}}}}))
    made = cfg.search.make(space)
    assert isinstance(made, PredictorGuided) and made.predictor == "toy_knn"


# -- 3. a search strategy -------------------------------------------------------------------------


def _define_toy_strategy() -> type[Strategy]:
    class Greedy(Strategy):
        """Mutations of the best architecture measured so far; uniform samples until ``warmup`` are.

        Keeps no state: everything it needs is read from the study, so a fresh instance resumes.
        """

        name = "toy_greedy"  # registers the class in STRATEGIES

        def __init__(self, space: SearchSpace, seed: int = 0, warmup: int = 4) -> None:
            super().__init__(space, seed)
            self.warmup = warmup

        @property
        def default_batch(self) -> int:
            return 4

        def ask(self, study: Any, n: int) -> list[ArchSpec]:
            rng = np.random.default_rng([self.seed, len(study.history())])
            specs, scores = study.measured()  # distinct measured architectures, finite scores
            if len(specs) < self.warmup:
                return [self.space.sample(rng) for _ in range(n)]
            best = specs[int(np.argmax(scores))]
            return [self.space.mutate(best, rng) for _ in range(n)]

    return Greedy


def test_a_toy_strategy_drives_the_search_loop_and_resumes_from_the_store(tmp_path: Path) -> None:
    from recnas.train.distributed import init_distributed

    cls = _define_toy_strategy()
    assert STRATEGIES["toy_greedy"] is cls and cls.param_names() == ["warmup"]
    with pytest.raises(ValueError, match=r"unknown parameters \['population'\]; allowed parameters are \['warmup'\]"):
        make_strategy("toy_greedy", SearchSpace.load("tiny"), population=8)
    cfg = load_pipeline(_pipeline(tmp_path, {"space": "tiny", "search": {
        "strategy": "toy_greedy", "params": {"warmup": 4}, "budget": 24, "batch": 4, "seed": 7}}))
    space = SearchSpace.load(cfg.space)
    ctx = ScoringContext(FM, batches=[random_batch(FM, 8)], init="fresh")
    env = init_distributed()

    def run(path: Path, budget: int) -> list[dict[str, Any]]:
        store = TrialStore.open(path, {"pipeline": "toy"})
        ev = ProxyEvaluator(make_estimator("params"), ctx, identity={})
        study = Study(store, space, measure=ev.measure, settings=ev.settings)
        search_loop(cfg.search.make(space), ev, study, budget, cfg.search.batch, env, progress=False)
        store.close()
        return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == "trial"]

    full = run(tmp_path / "full.jsonl", cfg.search.budget)
    assert [r["index"] for r in full] == list(range(24))
    scores = [r["score"] for r in full]
    assert max(scores[4:]) >= max(scores[:4])  # greedy from the best of the warm-up samples
    first: dict[str, dict[str, Any]] = {}
    for r in full:
        first.setdefault(r["key"], r)
    cached = [r for r in full if r["cached"]]
    assert cached, "greedy mutations in the tiny space repeat architectures"
    for r in cached:  # a repeated architecture is recorded from the store, not measured again
        assert r["score"] == first[r["key"]]["score"] and first[r["key"]]["index"] < r["index"]

    # cut after 10 measurements, continued by a fresh strategy instance reading only the store
    cut = tmp_path / "cut.jsonl"
    run(cut, 10)
    resumed = run(cut, cfg.search.budget)
    assert [(r["index"], r["key"], r["score"]) for r in resumed] == [(r["index"], r["key"], r["score"]) for r in full]


# -- 4. an op -------------------------------------------------------------------------------------


class ElasticTanh(nn.Module):
    """Toy dense op ``toy_tanh``: ``tanh(W x + b)``; ``W`` ``(Dmax, Dx_slots)`` as laid out."""

    def __init__(self, bl: Any, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(bl.dense_dim, bl.dense_in_width, device=device))
        self.bias = nn.Parameter(torch.empty(bl.dense_dim, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(max(self.weight.shape[1], 1))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def sliced(self, p: Any) -> dict[str, torch.Tensor]:
        from recnas.models.ops import take

        return {"weight": take(self.weight, p.d_rows, p.x_cols), "bias": take(self.bias, p.d_rows)}

    def forward(self, x: torch.Tensor, s: torch.Tensor | None, p: Any) -> torch.Tensor:
        w = self.sliced(p)
        return torch.tanh(F.linear(x, w["weight"], w["bias"]))

    @staticmethod
    def macs(d: int, dx: int, ns: int, e: int) -> int:
        return d * dx


def _toy_op_space(tmp_path: Path) -> Path:
    d = SearchSpace.load("tiny").to_dict()
    p = tmp_path / "tiny_toy.yaml"
    p.write_text(yaml.safe_dump({**d, "name": "tiny_toy", "dense_ops": ["fc", "toy_tanh"]}))
    return p


def test_a_toy_op_is_built_into_the_supernet_and_a_standalone_model(tmp_path: Path, monkeypatch) -> None:
    import recnas.models.layout as layout
    import recnas.models.ops as ops
    import recnas.space.space as space_mod
    from recnas.models import CTRModel, Supernet

    path = _toy_op_space(tmp_path)
    with pytest.raises(SpecError, match="unknown op 'toy_tanh'"):
        SearchSpace.load(path)  # ops are not a registry: the op lists must name it first

    # the edits the README lists (toy_tanh reads only x, so READS_SPARSE is left alone)
    monkeypatch.setattr(space_mod, "DENSE_OPS", space_mod.DENSE_OPS + ("toy_tanh",))
    monkeypatch.setattr(layout, "DENSE_OPS", layout.DENSE_OPS + ("toy_tanh",))
    monkeypatch.setitem(ops.DENSE_OP_CLASSES, "toy_tanh", ElasticTanh)

    space = SearchSpace.load(path)
    assert space.dense_ops == ("fc", "toy_tanh")
    rng = np.random.default_rng(0)
    assert any(b.dense_op == "toy_tanh" for _ in range(20) for b in space.sample(rng).blocks)
    b0 = BlockSpec("toy_tanh", "efc", dense_dim=16, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec("fc", "efc", 8, 4, (0, 1), (0, 1), dense_sparse_interact=True, deep_fm=True)
    b2 = BlockSpec("toy_tanh", "efc", 8, 8, (1, 2), (2,), dense_sparse_interact=True, deep_fm=True)
    spec = ArchSpec(embedding_dim=8, blocks=(b0, b1, b2))
    space.validate(spec)

    torch.manual_seed(0)
    net = Supernet(FM, space)
    assert "toy_tanh" in net.dense_arch.blocks[0].dense_ops
    batch = random_batch(FM, 16, torch.Generator().manual_seed(1))
    logits = net(batch.dense_features, batch.sparse_features, spec)
    assert logits.shape == (16,) and torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
    toy_w = net.dense_arch.blocks[2].dense_ops["toy_tanh"].weight
    assert toy_w.grad is not None and toy_w.grad.abs().sum() > 0
    assert net.dense_arch.blocks[1].dense_ops["toy_tanh"].weight.grad is None  # block 1 runs fc

    with torch.no_grad():  # the extracted standalone model holds slices of the supernet's weights
        model = net.extract(spec)
        torch.testing.assert_close(model(batch.dense_features, batch.sparse_features),
                                   net(batch.dense_features, batch.sparse_features, spec), atol=1e-5, rtol=1e-5)
    assert model.dense_arch.net.blocks[2].dense_ops["toy_tanh"].weight.shape == (8, 16 + 8)

    fresh = CTRModel(FM, spec)  # a standalone model at the spec's sizes, trained one step
    opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    loss = F.binary_cross_entropy_with_logits(fresh(batch.dense_features, batch.sparse_features), batch.labels)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    # the size estimators count it through its macs
    ctx = ScoringContext(FM, batches=[batch], init="fresh")
    fc_spec = ArchSpec.from_dict({**spec.to_dict(), "blocks": [{**b.to_dict(), "dense_op": "fc"} for b in spec.blocks]})
    assert make_estimator("flops").score([spec], ctx)[0] == fresh.flops_per_example() > 0
    assert fresh.flops_per_example() == CTRModel(FM, fc_spec).flops_per_example()  # same macs as fc


# -- 5. a dataset format --------------------------------------------------------------------------

TOY_LINES = [
    "click|price|city|ad",
    "1|12|3|68fd1e64",
    "0||7|0a1b2c3d",
    "0|5||ffffffff",
    "1|40|3|68fd1e64",
    "0|7|9|zzzzzzzz",  # not 8 hex digits: a bad row
]


def _toy_layout(labelled: bool = True):
    from recnas.data.formats import Layout

    return Layout(
        name="toy-psv", fmt="toy", delimiter="|", header=True,
        columns=("click", "price", "city", "ad"), label="click",
        dense=("price",), sparse=(("city", "int"), ("ad", "hex")),
    )


def test_a_toy_layout_is_read_by_the_generic_reader(tmp_path: Path) -> None:
    from recnas.data.reader import MISSING, read_decoded

    path = tmp_path / "toy.psv"
    path.write_text("\n".join(TOY_LINES) + "\n")
    (d,) = list(read_decoded(path, _toy_layout()))
    good = d.bad == 0
    assert d.rows_read == 5 and int(good.sum()) == 4 and d.bad_counts == {"bad_categorical": 1}
    assert d.first_bad.line == 6 and d.first_bad.reason == "bad_categorical" and "ad" in d.first_bad.message()
    np.testing.assert_array_equal(d.label[good], [1, 0, 0, 1])
    np.testing.assert_array_equal(d.dense[0, good], [12, np.nan, 5, 40])
    np.testing.assert_array_equal(d.codes[0, good], [3, 7, MISSING, 3])
    np.testing.assert_array_equal(d.codes[1, good], [0x68FD1E64, 0x0A1B2C3D, 0xFFFFFFFF, 0x68FD1E64])


def test_a_toy_format_is_prepared_end_to_end(tmp_path: Path, monkeypatch) -> None:
    import importlib

    import recnas.data.formats as formats
    from recnas.data.loader import ParquetBatchLoader, load_prepared
    from recnas.models import CTRModel

    prepare_mod = importlib.import_module("recnas.data.prepare")  # recnas.data.prepare is also a function's name
    path = tmp_path / "toy.psv"
    path.write_text("\n".join(TOY_LINES[:-1] + ["0|3|7|68fd1e64"] * 40) + "\n")
    with pytest.raises(ValueError, match="unknown --format 'toy'"):
        prepare_mod.prepare("toy", [path], tmp_path / "no", hash_size=100, progress=False)

    # the edits of recnas/data/formats.py the README lists: the name, the layout, the output features
    first_line, out_features = formats.layout_from_first_line, formats.output_features

    def layout_from_first_line(fmt: str, p: Any, line: str):
        if fmt != "toy":
            return first_line(fmt, p, line)
        if line.split("|") != ["click", "price", "city", "ad"]:
            raise formats.BadInputError(f"{p}:1: not a toy header, got {line[:80]!r}")
        return _toy_layout()

    def output_features(fmt: str):
        return (("price",), ("city", "ad")) if fmt == "toy" else out_features(fmt)

    monkeypatch.setattr(formats, "FORMATS", formats.FORMATS + ("toy",))
    monkeypatch.setattr(formats, "layout_from_first_line", layout_from_first_line)
    monkeypatch.setattr(prepare_mod, "output_features", output_features)  # imported there by name

    stats = prepare_mod.prepare("toy", [path], tmp_path / "toy", hash_size=100, split=(0.8, 0.1, 0.1),
                                seed=1, progress=False)
    assert stats["rows_read"] == 44 and stats["rows_skipped_total"] == 0
    assert sum(stats["rows_written"].values()) == 44
    fm, splits = load_prepared(tmp_path / "toy")
    assert fm.dataset == "toy" and fm.dense_names == ["price"] and fm.sparse_names == ["city", "ad"]
    assert json.loads((tmp_path / "toy" / "feature_map.json").read_text())["meta"]["layouts"] == ["toy-psv"]

    batch = next(iter(ParquetBatchLoader(splits["train"], fm, batch_size=8)))
    assert batch.dense_features.shape == (8, 1) and list(batch.sparse_features.keys()) == ["city", "ad"]
    spec = SearchSpace.load("tiny").sample(np.random.default_rng(0))
    logits = CTRModel(fm, spec)(batch.dense_features, batch.sparse_features)
    assert logits.shape == (8,) and torch.isfinite(logits).all()
