"""ZiCo / SiGeo variants of issue 18 (scope, reduce, loss_on; with local_steps): formulas on
hand-checkable cases, defaults bit-identical to the formula before the options, errors, and the
bench / search configuration and score cache."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from benchkit import tiny_bench_pipeline

from recnas.config import ConfigError, to_dict
from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.estimators import ScoringContext, SiGeo, make_estimator
from recnas.estimators._autograd import batch_gradients
from recnas.estimators.sigeo import FISHER_RAO_FLOOR, shared_terms, sigeo_terms
from recnas.estimators.zico import _snr, zico_term
from recnas.identity import digest
from recnas.models import Supernet
from recnas.space import SearchSpace

FM = FeatureMap(
    "synthetic",
    dense=tuple(DenseFeature(f"I{i}") for i in range(3)),
    sparse=tuple(SparseFeature(f"C{i}", 40 + 10 * i) for i in range(4)),
)


@pytest.fixture(scope="module")
def supernet() -> Supernet:
    torch.manual_seed(0)
    return Supernet(FM, SearchSpace.load("tiny"))


@pytest.fixture(scope="module")
def specs() -> list:
    rng = np.random.default_rng(0)
    space = SearchSpace.load("tiny")
    return [space.sample(rng) for _ in range(3)]


def _ctx(supernet: Supernet | None, init: str = "inherit", val: int = 2) -> ScoringContext:
    g = torch.Generator().manual_seed(123)
    batches = [random_batch(FM, 48, g) for _ in range(3)]
    vals = [random_batch(FM, 40, g) for _ in range(val)]
    return ScoringContext(FM, batches, vals, supernet=supernet, init=init, seed=0, device="cpu")


# -- the formulas ----------------------------------------------------------------------------------


def _hand_grads() -> list[dict[str, torch.Tensor]]:
    """Two minibatches. Per coordinate, (g1, g2) -> mean|g| / std (std = |g1 - g2| / 2):
    (1, 3) -> 2, (3, -1) -> 1, (0, 2) -> 1, (g, g) -> excluded."""
    g1 = {
        "blk.w": torch.tensor([[1.0, 3.0], [2.0, 0.0]]),  # 2 + 1 + (excl.) + 1 = 4
        "blk.b": torch.tensor([1.0]),  # 2
        "head.w": torch.tensor([[1.0, 4.0]]),  # 2 + (excl.) = 2
        "head.b": torch.tensor([7.0]),  # constant: contributes nothing
        "embedding_rows.C0": torch.tensor([[1.0], [0.0]]),  # 2 + 1 = 3
    }
    g2 = {
        "blk.w": torch.tensor([[3.0, -1.0], [2.0, 2.0]]),
        "blk.b": torch.tensor([3.0]),
        "head.w": torch.tensor([[3.0, 4.0]]),
        "head.b": torch.tensor([7.0]),
        "embedding_rows.C0": torch.tensor([[3.0], [2.0]]),
    }
    return [g1, g2]


def test_zico_scope_and_reduce_on_hand_made_gradients() -> None:
    g = _hand_grads()
    all_sum = math.log(4) + math.log(2) + math.log(2) + math.log(3)
    assert zico_term(g) == pytest.approx(all_sum)
    assert zico_term(g, "all", "mean") == pytest.approx(all_sum / 4)  # 4 contributing tensors (head.b not)
    # layers: blk (w, b), head (w; b contributes nothing), each feature's rows -> 3
    assert zico_term(g, "all", "per_layer") == pytest.approx(all_sum / 3)
    # linear: the 2-D weight matrices blk.w and head.w -- no bias, no embedding rows
    assert zico_term(g, "linear") == pytest.approx(math.log(4) + math.log(2))
    assert zico_term(g, "linear", "mean") == pytest.approx((math.log(4) + math.log(2)) / 2)
    assert zico_term(g, "linear", "per_layer") == pytest.approx((math.log(4) + math.log(2)) / 2)
    constant = [{"w": torch.ones(2, 2)}, {"w": torch.ones(2, 2)}]
    for scope in ("all", "linear"):
        for reduce in ("sum", "mean", "per_layer"):
            assert zico_term(constant, scope, reduce) == 0.0


def _old_zico_term(grads: list[dict[str, torch.Tensor]]) -> float:
    """ZiCo exactly as recnas computed it before the options (the released formula)."""
    total = 0.0
    for name in list(grads[0]):
        keep, ratio = _snr([g[name].reshape(-1) for g in grads])
        if not bool(keep.any()):
            continue
        tensor_sum = float(torch.where(keep, ratio, 0.0).sum(dtype=torch.float64))
        if tensor_sum > 0.0:
            total += math.log(tensor_sum)
    return total


def _old_sigeo_terms(bgs: list) -> dict[str, float]:
    tdg = np.array([bg.theta_dot_g for bg in bgs], dtype=np.float64)
    return {"zico": _old_zico_term([bg.grads for bg in bgs]),
            "fisher_rao": math.log(max(float(np.mean(tdg**2)), FISHER_RAO_FLOOR)),
            "loss": float(np.mean([bg.loss for bg in bgs]))}


@pytest.mark.parametrize("embeddings", ["none", "rows"])
def test_defaults_are_bit_identical_to_the_formula_before_the_options(supernet: Supernet, specs: list,
                                                                       embeddings: str) -> None:
    ctx = _ctx(supernet)
    for spec in specs:
        cand = ctx.candidate(spec)
        bgs = batch_gradients(cand.module, cand.batches, embeddings, cand.feature_names)
        old = _old_sigeo_terms(bgs)
        assert zico_term([bg.grads for bg in bgs]) == old["zico"]  # ==, not approx
        assert sigeo_terms(bgs) == old
        assert SiGeo(embeddings=embeddings).terms_spec(spec, ctx) == old
        want = old["zico"] + 50 * old["fisher_rao"] - old["loss"]
        assert SiGeo(embeddings=embeddings).score_spec(spec, ctx) == want
        if embeddings == "none":
            assert make_estimator("zico").score_spec(spec, ctx) == old["zico"]


def test_heldout_loss_term_is_the_validation_loss_at_the_same_weights(supernet: Supernet, specs: list) -> None:
    ctx = _ctx(supernet)
    held = SiGeo(loss_on="heldout").terms(specs, ctx)
    train = SiGeo().terms(specs, ctx)
    np.testing.assert_array_equal(held[:, :2], train[:, :2])  # ZiCo and Fisher-Rao unchanged
    with torch.no_grad():
        want = [np.mean([float(F.binary_cross_entropy_with_logits(
            supernet(b.dense_features, b.sparse_features, s), b.labels)) for b in ctx.val_batches]) for s in specs]
    np.testing.assert_allclose(held[:, 2], want, rtol=1e-6)
    # equal-sized validation batches and no local steps: -loss is the one-shot score
    np.testing.assert_allclose(-held[:, 2], make_estimator("oneshot").score(specs, ctx), rtol=1e-6)
    with pytest.raises(ValueError, match="sigeo loss_on='heldout' needs validation batches"):
        SiGeo(loss_on="heldout").score(specs, _ctx(supernet, val=0))


def test_options_compose_with_local_steps(supernet: Supernet, specs: list) -> None:
    """Three Adagrad steps on a copy, redone by hand with .backward(): ZiCo (linear, mean) of the
    steps' gradients, and the held-out loss after the last step."""
    ctx, spec, lr = _ctx(supernet), specs[0], 0.04
    est = SiGeo(local_steps=3, local_lr=lr, scope="linear", reduce="mean", loss_on="heldout")
    got = est.terms_spec(spec, ctx)
    cand = ctx.candidate(spec)
    model = copy.deepcopy(cand.module)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adagrad([p for _, p in named], lr=lr)
    grads, thetas_dot_g = [], []
    for cb in cand.batches:  # 3 batches, 3 steps
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(cb.dense, cb.emb), cb.labels).backward()
        grads.append({n: p.grad.detach().clone() for n, p in named})
        thetas_dot_g.append(float(sum((p.detach() * p.grad).sum() for _, p in named)))
        opt.step()
    assert got["zico"] == pytest.approx(zico_term(grads, "linear", "mean"), rel=1e-5)
    assert got["fisher_rao"] == pytest.approx(math.log(np.mean(np.square(thetas_dot_g))), rel=1e-5)
    with torch.no_grad():
        held = np.mean([float(F.binary_cross_entropy_with_logits(model(cb.dense, cb.emb), cb.labels))
                        for cb in ctx.inputs(spec, "val")])
    assert got["loss"] == pytest.approx(held, rel=1e-5)
    assert all(p.grad is None for p in supernet.parameters())


def test_one_gradient_pass_serves_every_variant_of_the_same_gradients(supernet: Supernet, specs: list) -> None:
    ctx = _ctx(supernet, "fresh")
    ests = [SiGeo(), SiGeo(scope="linear"), SiGeo(reduce="mean"), SiGeo(reduce="per_layer"),
            SiGeo(scope="linear", reduce="mean", loss_on="heldout")]
    for spec in specs:
        together = shared_terms(ests, spec, ctx)
        assert together == [e.terms_spec(spec, ctx) for e in ests]
    assert len({round(t["zico"], 9) for t in together}) == 5  # (all|linear) x (sum|mean|per_layer) seen: all differ
    with pytest.raises(ValueError, match="gradient settings differ"):
        shared_terms([SiGeo(), SiGeo(local_steps=2)], specs[0], ctx)


# -- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, params, message", [
    ("zico", {"scope": "conv"}, r"zico scope: expected one of \['all', 'linear'\], got 'conv'"),
    ("zico", {"reduce": "median"}, r"zico reduce: expected one of \['sum', 'mean', 'per_layer'\], got 'median'"),
    ("zico", {"scope": "linear", "embeddings": "rows"}, r"zico: scope='linear' leaves the embedding rows out"),
    ("sigeo", {"scope": "weights"}, r"sigeo scope: expected one of \['all', 'linear'\], got 'weights'"),
    ("sigeo", {"reduce": "avg"}, r"sigeo reduce: expected one of .*got 'avg'"),
    ("sigeo", {"loss_on": "test"}, r"sigeo loss_on: expected one of \['train', 'heldout'\], got 'test'"),
    ("sigeo", {"local_steps": 1}, r"sigeo local_steps: expected 0 or >= 2, got 1"),
])
def test_unknown_option_values_fail_when_scoring_starts(supernet: Supernet, specs: list, name: str, params: dict,
                                                         message: str) -> None:
    est = make_estimator(name, **params)  # stored unchanged: sklearn-style, nothing checked here
    assert {k: est.get_params()[k] for k in params} == params
    with pytest.raises(ValueError, match=message):
        est.score(specs, _ctx(supernet))


def test_configs_check_option_values_before_any_work(tmp_path: Path) -> None:
    from recnas.bench.config import load_bench
    from recnas.search.config import load_pipeline

    p = tiny_bench_pipeline(tmp_path, "b", tmp_path / "cache", num_archs=2,
                            estimators=[{"name": "params"}, {"name": "sigeo", "params": {"reduce": "avg"}}])
    with pytest.raises(ConfigError, match=r"'estimators\[1\]': sigeo reduce: expected one of"):
        load_bench(p)
    s = tmp_path / "search.yaml"
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {"name": "zico", "params": {"scope": "bias"}}}))
    with pytest.raises(ConfigError, match=r"'estimator': zico scope: expected one of"):
        load_pipeline(s)
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {"name": "sigeo", "params": {"loss_on": "heldout",
                                                                                          "scope": "linear"}}}))
    assert load_pipeline(s).estimator.params == {"loss_on": "heldout", "scope": "linear"}


# -- identities and the bench's score cache ---------------------------------------------------------


def test_default_valued_new_options_leave_identities_unchanged() -> None:
    assert SiGeo().identity_params() == {"weights": "paper", "embeddings": "none", "local_steps": 0, "local_lr": 0.04}
    assert make_estimator("zico").identity_params() == {"embeddings": "none"}
    assert SiGeo(scope="linear", loss_on="heldout").identity_params() == {
        "weights": "paper", "embeddings": "none", "local_steps": 0, "local_lr": 0.04, "scope": "linear",
        "loss_on": "heldout"}
    assert make_estimator("zico", reduce="mean").identity_params() == {"embeddings": "none", "reduce": "mean"}


def test_bench_caches_each_variant_under_its_own_key_and_the_default_under_the_old_one(tmp_path: Path) -> None:
    from recnas.bench.compare import run_compare
    from recnas.bench.config import load_bench

    entries = [
        {"name": "sigeo", "params": {"weights": "public_criteo"}, "label": "sigeo"},
        {"name": "sigeo", "params": {"weights": "zico", "scope": "linear", "reduce": "mean"}, "label": "zico lm"},
        {"name": "sigeo", "params": {"scope": "linear", "reduce": "mean", "loss_on": "heldout"}, "label": "sigeo lmh"},
    ]
    p = tiny_bench_pipeline(tmp_path, "v", tmp_path / "cache", num_archs=2, estimators=entries,
                            warmup={"fractions": [0.0], "batch_size": 32}, sigeo_ablation={"embeddings": ["none"]})
    cfg = load_bench(p)
    assert run_compare(cfg, progress=False, score_only=True) is None
    store = tmp_path / "v" / "scores" / "trials.jsonl"
    records = [json.loads(x) for x in store.read_text().splitlines()[1:]]
    terms = [r for r in records if r["measure"] == "sigeo_terms"]
    assert len(terms) == 2 * 3 * 2  # architectures x option sets x contexts (fresh, inherit 0 %)
    old_key = digest({"what": "sigeo_terms", "params": {"weights": "paper", "embeddings": "none", "local_steps": 0,
                                                        "local_lr": 0.04},
                      "ctx": {"init": "fresh", "scoring": to_dict(cfg.scoring)}})
    by_settings: dict[str, list] = {}
    for r in terms:
        by_settings.setdefault(r["settings"], []).append(r["values"]["v"])
    assert old_key in by_settings  # the default's records keep the key of the release before the options
    fresh_default = by_settings[old_key]
    others = [v for k, v in by_settings.items() if k != old_key]
    assert any(v[0][0] != fresh_default[0][0] for v in others)  # a ZiCo variant differs
    # a rerun with the default entry alone finds everything cached: nothing is scored again
    lines = store.read_text().splitlines()
    run_compare(load_bench(p, ["estimators=[{name: sigeo, label: sigeo}]"]), progress=False, score_only=True)
    assert store.read_text().splitlines() == lines
