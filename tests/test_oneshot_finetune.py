"""The one-shot score's head fine-tuning (NASRec's subnet fitness, issue 18): the default is the score
of earlier releases bit for bit, fine-tuning changes it and lowers the validation loss of a warmed-up
supernet's candidates, never touches the supernet, and enters the estimator's identity only when set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recnas.data import ParquetBatchLoader, load_prepared, prepare_synthetic
from recnas.estimators import OneShot, ScoringContext, make_estimator
from recnas.estimators.context import CandidateBatch
from recnas.estimators.oneshot import finetune_head, head_features
from recnas.study.context import scoring_batches
from recnas.study.evaluators import ProxyEvaluator
from recnas.space import SearchSpace
from recnas.train.warmup import WarmupConfig, load_supernet, warmup


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """4,000 synthetic rows (with a teacher's signal), prepared."""
    return prepare_synthetic(tmp_path_factory.mktemp("data") / "ds", 4000, hash_size=200)


@pytest.fixture(scope="module")
def train_split(dataset: Path) -> Path:
    return load_prepared(dataset)[1]["train"]


@pytest.fixture(scope="module")
def warmed(dataset: Path, tmp_path_factory) -> tuple:
    """A tiny-space supernet warmed up for 30 steps on synthetic rows (with a teacher's signal), its
    scoring context (4 x 64 training rows, 4 x 64 validation rows) and 8 distinct architectures."""
    data = dataset
    fm, splits = load_prepared(data)
    space = SearchSpace.load("tiny")
    run = tmp_path_factory.mktemp("warm")
    loader = ParquetBatchLoader(splits["train"], fm, batch_size=64, shuffle=True)
    warmup(fm, space, loader, config=WarmupConfig(max_steps=30, lr=0.01, table_lr=0.01, progress=False), out_dir=run)
    net = load_supernet(run, torch.device("cpu"))
    train, valid = scoring_batches(splits, fm, batches=4, val_batches=4, batch_size=64, section="scoring")
    ctx = ScoringContext(fm, train, valid, supernet=net, init="inherit", seed=0, device="cpu")
    rng = np.random.default_rng(5)
    specs: list = []
    while len(specs) < 8:
        s = space.sample(rng)
        if s.key() not in {x.key() for x in specs}:
            specs.append(s)
    return ctx, specs


def _old_score(spec, ctx: ScoringContext) -> float:
    """The one-shot score as released before the option (the loop of the earlier ``score_spec``)."""
    cand = ctx.candidate(spec, which="val")
    total, rows = 0.0, 0
    with torch.no_grad():
        for cb in cand.batches:
            logits = cand.module(cb.dense, cb.emb).reshape(-1)
            total += float(F.binary_cross_entropy_with_logits(logits, cb.labels, reduction="sum"))
            rows += cb.batch_size
    return -total / rows


def _hand_finetuned(ctx: ScoringContext, spec, module, cbs, steps: int) -> float:
    """The expected score: the head fine-tuned by hand on ``cbs`` for ``steps`` steps, then the
    validation log loss (negated, per row) on the context's validation batches."""
    feats, w0, b0 = head_features(module, cbs)
    w, b = finetune_head(feats, [cb.labels for cb in cbs], w0, b0, steps, 0.04)
    val = ctx.inputs(spec, "val")
    vfeats, _, _ = head_features(module, val)
    with torch.no_grad():
        loss = sum(float(F.binary_cross_entropy_with_logits(F.linear(h, w, b).reshape(-1), cb.labels,
                                                            reduction="sum")) for h, cb in zip(vfeats, val))
    return -loss / sum(cb.batch_size for cb in val)


def test_default_is_the_earlier_score_bit_for_bit(warmed: tuple) -> None:
    ctx, specs = warmed
    old = np.array([_old_score(s, ctx) for s in specs])
    np.testing.assert_array_equal(make_estimator("oneshot").score(specs, ctx), old)
    # with no steps the lr is unused: the same bits whatever it is
    np.testing.assert_array_equal(OneShot(finetune_steps=0, finetune_lr=0.5).score(specs, ctx), old)


def test_head_features_reproduce_the_candidates_logits(warmed: tuple) -> None:
    ctx, specs = warmed
    for spec in specs[:3]:
        cand = ctx.candidate(spec, which="val")
        feats, w, b = head_features(cand.module, cand.batches)
        with torch.no_grad():
            for h, cb in zip(feats, cand.batches):
                torch.testing.assert_close(F.linear(h, w, b).reshape(-1), cand.module(cb.dense, cb.emb).reshape(-1))


def test_finetuning_lowers_validation_loss_and_leaves_the_supernet_unchanged(warmed: tuple) -> None:
    ctx, specs = warmed
    before = {k: v.detach().clone() for k, v in ctx.supernet.state_dict().items() if isinstance(v, torch.Tensor)}
    base = make_estimator("oneshot").score(specs, ctx)
    tuned = OneShot(finetune_steps=10).score(specs, ctx)  # 10 steps over 4 batches: cycled
    assert np.all(np.isfinite(tuned))
    assert not np.array_equal(tuned, base)
    # higher score = lower validation log loss: most candidates gain from a fitted head, and on average
    assert int(np.sum(tuned > base)) >= 6, (base, tuned)
    assert tuned.mean() > base.mean() + 0.01, (base, tuned)
    after = ctx.supernet.state_dict()
    assert before.keys() == {k for k, v in after.items() if isinstance(v, torch.Tensor)}
    for k, v in before.items():
        assert torch.equal(v, after[k]), k
    # the default score is unchanged by the fine-tuning run before it, and fine-tuning is deterministic
    np.testing.assert_array_equal(make_estimator("oneshot").score(specs, ctx), base)
    np.testing.assert_array_equal(OneShot(finetune_steps=10).score(specs, ctx), tuned)
    # the lr and the number of steps matter
    assert not np.array_equal(OneShot(finetune_steps=10, finetune_lr=0.004).score(specs[:2], ctx), tuned[:2])
    assert not np.array_equal(OneShot(finetune_steps=11).score(specs[:2], ctx), tuned[:2])


def test_identity_changes_only_when_the_option_is_set(warmed: tuple) -> None:
    ctx, _ = warmed
    assert OneShot().identity_params() == {}
    assert OneShot(finetune_lr=0.3).identity_params() == {}  # no steps: the lr changes nothing
    assert OneShot(finetune_steps=500).identity_params() == {"finetune_steps": 500}
    assert OneShot(finetune_steps=500, finetune_lr=0.1).identity_params() == {"finetune_steps": 500,
                                                                              "finetune_lr": 0.1}
    # the search's trial store keys scores by the same identity
    ident = {"scoring": "x"}
    assert ProxyEvaluator(OneShot(), ctx, ident).identity() == {"estimator": "oneshot", "params": {}, **ident}
    assert ProxyEvaluator(OneShot(finetune_steps=100), ctx, ident).identity()["params"] == {"finetune_steps": 100}


@pytest.mark.parametrize("params, message", [
    ({"finetune_steps": -1}, r"^oneshot finetune_steps: expected an integer >= 0, got -1$"),
    ({"finetune_steps": 2.5}, r"^oneshot finetune_steps: expected an integer >= 0, got 2.5$"),
    ({"finetune_steps": True}, r"^oneshot finetune_steps: expected an integer >= 0, got True$"),
    ({"finetune_steps": 10, "finetune_lr": 0}, r"^oneshot finetune_lr: expected a positive number, got 0$"),
    ({"finetune_lr": "fast"}, r"^oneshot finetune_lr: expected a positive number, got 'fast'$"),
])
def test_bad_values_fail_when_scoring_starts(warmed: tuple, params: dict, message: str) -> None:
    ctx, specs = warmed
    est = make_estimator("oneshot", **params)
    with pytest.raises(ValueError, match=message):
        est.score(specs[:1], ctx)


def test_configs_check_the_options_before_any_work(tmp_path: Path) -> None:
    import yaml

    from recnas.config import ConfigError
    from recnas.search.config import load_pipeline

    s = tmp_path / "search.yaml"
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {"name": "oneshot", "params": {"finetune_steps": -5}}}))
    with pytest.raises(ConfigError, match=r"'estimator': oneshot finetune_steps: expected an integer >= 0"):
        load_pipeline(s)


def test_ready_made_lookups_give_the_same_finetuned_scores(warmed: tuple) -> None:
    """The sharded scoring path hands the context ready-made lookups (computed through the sharded
    tables) instead of the supernet's tables; fine-tuning reads only those, so it scores the same."""
    ctx, specs = warmed
    net = ctx.supernet
    with torch.no_grad():
        lookups = {which: [net.sparse_arch(b.sparse_features).detach().clone() for b in src]
                   for which, src in (("train", ctx.batches), ("val", ctx.val_batches))}
    other = ScoringContext(ctx.feature_map, ctx.batches, ctx.val_batches, supernet=net, init="inherit", seed=0,
                           device="cpu", lookups=lookups)
    est = OneShot(finetune_steps=10)
    np.testing.assert_array_equal(est.score(specs[:3], other), est.score(specs[:3], ctx))


# -- finetune_rows: fresh (one new training batch per step, the rows after the scoring batches) ---------------------


def _stream_context(ctx: ScoringContext, split: Path, **kw) -> ScoringContext:
    """``ctx``'s batches and supernet with a stream of the rows after its 4 scoring batches."""
    from recnas.study.context import FreshBatches

    rows = FreshBatches(split, ctx.feature_map, 64, 4, **kw)
    return ScoringContext(ctx.feature_map, ctx.batches, ctx.val_batches, supernet=ctx.supernet, init="inherit",
                          seed=0, device="cpu", fresh_batches=rows)


def test_fresh_rows_are_the_batches_after_the_scoring_ones_and_finetune_on_them(warmed: tuple, train_split: Path) -> None:
    ctx, specs = warmed
    fctx = _stream_context(ctx, train_split)
    stream = fctx.fresh_batches
    # the stream: full batches of the scoring size, in file order, right after the scoring rows
    loader = ParquetBatchLoader(train_split, ctx.feature_map, batch_size=64, limit=20 * 64)
    expected = list(loader)[4:20]
    got = stream.get(16)
    assert len(got) == 16 and stream.available == stream.split_rows // 64 - 4
    for a, b in zip(got, expected):
        assert torch.equal(a.dense_features, b.dense_features) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.sparse_features.values(), b.sparse_features.values())
    assert not torch.equal(got[0].labels, ctx.batches[0].labels.cpu())
    # 12 fresh steps = a hand-made fine-tune on fresh batches 0..11, one each
    steps = 12
    fresh = OneShot(finetune_steps=steps, finetune_rows="fresh").score(specs[:3], fctx)
    scoring = OneShot(finetune_steps=steps).score(specs[:3], fctx)
    assert np.all(np.isfinite(fresh)) and not np.array_equal(fresh, scoring)
    net = ctx.supernet
    for spec, score in zip(specs[:3], fresh):
        module = ctx.dense_module(spec)
        with torch.no_grad():
            cbs = [CandidateBatch(b.dense_features, net.sparse_arch(b.sparse_features)[..., :spec.embedding_dim],
                                  b.labels.float()) for b in expected[:steps]]
        assert score == pytest.approx(_hand_finetuned(ctx, spec, module, cbs, steps), rel=1e-6, abs=1e-7)
    # the same rows in a second stream and context: the same scores, bit for bit
    again = OneShot(finetune_steps=steps, finetune_rows="fresh").score(specs[:3], _stream_context(ctx, train_split))
    np.testing.assert_array_equal(again, fresh)
    # default options unchanged by a context with a stream
    np.testing.assert_array_equal(make_estimator("oneshot").score(specs, fctx), make_estimator("oneshot").score(specs, ctx))


def test_fresh_rows_cycle_when_the_split_runs_out(warmed: tuple, train_split: Path) -> None:
    ctx, specs = warmed
    fctx = _stream_context(ctx, train_split)
    n = fctx.fresh_batches.available
    assert fctx.fresh_batches.index(n) == 0 and fctx.fresh_batches.index(n + 3) == 3
    # more steps than fresh batches: the fine-tune cycles over them, as finetune_head over that list
    steps = n + 5
    spec = specs[0]
    score = OneShot(finetune_steps=steps, finetune_rows="fresh").score([spec], fctx)[0]
    module = ctx.dense_module(spec)
    cbs = fctx.fresh_inputs(spec, steps)
    assert len(cbs) == n
    assert score == pytest.approx(_hand_finetuned(ctx, spec, module, cbs, steps), rel=1e-6, abs=1e-7)


def test_fresh_rows_identity_and_errors(warmed: tuple) -> None:
    ctx, specs = warmed
    assert OneShot(finetune_rows="fresh").identity_params() == {}  # no steps: the rows change nothing
    assert OneShot(finetune_steps=500, finetune_rows="scoring").identity_params() == {"finetune_steps": 500}
    assert OneShot(finetune_steps=500, finetune_rows="fresh").identity_params() == {"finetune_steps": 500,
                                                                                  "finetune_rows": "fresh"}
    with pytest.raises(ValueError, match=r"^oneshot finetune_rows: expected one of \['scoring', 'fresh'\], got 'new'$"):
        OneShot(finetune_steps=5, finetune_rows="new").score(specs[:1], ctx)
    # a hand-built context with fixed batches only: a one-line error naming the option
    with pytest.raises(ValueError, match=r"^oneshot finetune_rows: fresh: this scoring context has fixed batches only"):
        OneShot(finetune_steps=5, finetune_rows="fresh").score(specs[:1], ctx)


def test_bench_and_search_contexts_supply_the_stream(tmp_path: Path) -> None:
    """The bench's comparison and the search's scoring context carry the rows after their scoring batches."""
    import yaml

    from recnas.bench.compare import fresh_stream
    from recnas.bench.config import load_bench
    from recnas.search.config import load_pipeline
    from recnas.search.runner import _scoring_context

    data = prepare_synthetic(tmp_path / "ds", 1500, hash_size=100)
    fm, splits = load_prepared(data)
    b = tmp_path / "bench.yaml"
    b.write_text(yaml.safe_dump({"data": {"prepared": str(data)}, "space": "tiny", "num_archs": 4,
                                 "scoring": {"batches": 2, "batch_size": 32, "val_batches": 1},
                                 "output": str(tmp_path / "bench")}))
    stream = fresh_stream(load_bench(b), fm, splits)
    first = stream.get(1)[0]
    after = list(ParquetBatchLoader(splits["train"], fm, batch_size=32, limit=3 * 32))[2]
    assert torch.equal(first.labels, after.labels) and torch.equal(first.dense_features, after.dense_features)
    s = tmp_path / "search.yaml"
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {
        "name": "oneshot", "params": {"finetune_steps": 3, "finetune_rows": "fresh"}, "init": "fresh",
        "batches": 2, "batch_size": 32, "val_batches": 1}}))
    cfg = load_pipeline(s)
    ctx = _scoring_context(cfg, tmp_path / "run", data, fm, torch.device("cpu"))
    assert ctx.fresh_batches.batch_size == 32 and ctx.fresh_batches.skip == 2
    assert torch.equal(ctx.fresh_batches.get(1)[0].labels, after.labels)


def test_sharded_search_refuses_fresh_rows_before_any_work(tmp_path: Path) -> None:
    import yaml

    from recnas.search.config import load_pipeline
    from recnas.search.runner import _check_fresh_rows

    s = tmp_path / "search.yaml"
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {
        "name": "oneshot", "params": {"finetune_steps": 3, "finetune_rows": "fresh"}, "sharded": True}}))
    with pytest.raises(ValueError, match=r"^oneshot finetune_rows: fresh is not available with sharded scoring "
                                         r"\(estimator.sharded\)"):
        _check_fresh_rows(load_pipeline(s), 1)
    s.write_text(yaml.safe_dump({"space": "tiny", "estimator": {
        "name": "oneshot", "params": {"finetune_steps": 3, "finetune_rows": "scoring"}, "sharded": True}}))
    _check_fresh_rows(load_pipeline(s), 1)  # the scoring batches' lookups are computed through the shards
