"""Splitting the supernet (NAS-LID / GM-NAS): LID vectors with inherited weights, the bipartition,
the choice picked by its score, shared tables and independent dense copies, routing and scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lidkit import batches, small_fm
from recnas.data.batch import random_batch
from recnas.estimators import ScoringContext, make_estimator
from recnas.lid import lid_mle
from recnas.lid.split import Region, SplitConfig, best_bipartition, lid_vector, split_supernet
from recnas.models import Supernet
from recnas.models.layout import liveness
from recnas.space import SearchSpace


@pytest.fixture(scope="module")
def parent():
    fm = small_fm()
    torch.manual_seed(0)
    return Supernet(fm, SearchSpace.load("tiny")).eval(), fm


@pytest.fixture(scope="module")
def lid_split(parent):
    net, fm = parent
    cfg = SplitConfig(method="lid", levels=1, batches=2, k=10)
    return split_supernet(net, batches(fm, 2), cfg, finetune_batches=batches(fm, 3, seed=10), finetune_steps=6,
                          lr=0.05)


def test_lid_vector_is_each_block_outputs_lid_with_the_inherited_weights(parent):
    net, fm = parent
    space = net.space
    b = random_batch(fm, 96, torch.Generator().manual_seed(5))
    emb = net.sparse_arch(b.sparse_features).detach()
    for seed in range(4):
        spec = space.sample(np.random.default_rng(seed))
        v = lid_vector(net, b.dense_features, emb, spec, k=10)
        # the same outputs from the standalone model extracted with the inherited weights
        model = net.extract_dense(spec)
        outs = {}
        hooks = [blk.register_forward_hook(lambda m, i, o, j=j: outs.__setitem__(j, o))
                 for j, blk in enumerate(model.net.blocks)]
        with torch.no_grad():
            model(b.dense_features, emb[..., : spec.embedding_dim])
        for h in hooks:
            h.remove()
        live, _ = liveness(spec)
        assert v.shape == (2 * space.num_blocks,)
        for j in range(space.num_blocks):
            y, t = outs[j]
            for pos, out, is_live in ((2 * j, y, live[j].dense_op), (2 * j + 1, t, live[j].sparse_op)):
                if out is None:
                    assert np.isnan(v[pos]) and not is_live
                else:
                    assert v[pos] == pytest.approx(lid_mle(out, 10), rel=1e-6)


def test_bipartition_recovers_the_blocks_of_a_block_diagonal_similarity():
    groups = [0, 1, 0, 1, 0, 1, 1]
    n = len(groups)
    rng = np.random.default_rng(0)
    sim = np.array([[0.9 if groups[i] == groups[j] else 0.1 for j in range(n)] for i in range(n)])
    sim = sim + rng.uniform(-0.05, 0.05, (n, n))
    sim = (sim + sim.T) / 2
    want = {(0, 2, 4), (1, 3, 5, 6)}
    a, b, score = best_bipartition(sim)  # exhaustive
    assert {a, b} == want and score < 0.2
    a, b, _ = best_bipartition(sim, exhaustive_max=2)  # spectral clustering
    assert {a, b} == want


def test_lid_split_partitions_the_best_scored_choice_into_two_nonempty_groups(lid_split):
    rec = lid_split.record
    (s,) = rec.splits
    assert s["choice"] == min(s["scores"], key=s["scores"].get) and s["score"] == min(s["scores"].values())
    a, b = s["groups"]
    assert a and b and sorted(a + b) == sorted(s["ops"])
    assert len(lid_split.subnets) == 2
    # the regions partition the space: every architecture lies in exactly one
    space = lid_split.space
    for seed in range(30):
        spec = space.sample(np.random.default_rng(100 + seed))
        assert sum(r.contains(spec) for r in lid_split.regions) == 1
    assert rec.forward_passes > 0 and rec.backward_passes == 0 and rec.finetune_steps == 6


def test_sub_supernets_share_the_tables_and_own_their_dense_weights(parent, lid_split):
    net, _ = parent
    tabs = [dict(s.sparse_arch.named_parameters()) for s in lid_split.subnets]
    for name, p in net.sparse_arch.named_parameters():
        assert all(t[name].data_ptr() == p.data_ptr() for t in tabs)
    a, b = (dict(s.dense_arch.named_parameters()) for s in lid_split.subnets)
    common = sorted(set(a) & set(b))
    assert common and all(a[n].data_ptr() != b[n].data_ptr() for n in common)
    # fine-tuning moved each copy's dense weights away from the parent's, differently
    parent_w = dict(net.dense_arch.named_parameters())
    head = "head.weight"
    assert not torch.equal(a[head], parent_w[head]) and not torch.equal(a[head], b[head])
    # the other group's ops on the split choice are dropped from each copy
    (s,) = lid_split.record.splits
    blk, kind = int(s["choice"].split("[")[1].split("]")[0]), s["choice"].split(".")[1]
    for sub, group in zip(lid_split.subnets, s["groups"]):
        mods = getattr(sub.dense_arch.blocks[blk], "dense_ops" if kind == "dense_op" else "sparse_ops")
        assert sorted(mods.keys()) == sorted(group)
    mem = lid_split.memory()
    assert mem["table_params"] == sum(p.numel() for p in net.sparse_arch.parameters())
    assert mem["dense_params_total"] == sum(mem[f"dense_params_{i}"] for i in range(2))


def test_scoring_through_the_split_equals_scoring_through_the_sub_supernet_that_holds_it(parent, lid_split):
    _, fm = parent
    train, val = batches(fm, 2, 32, seed=50), batches(fm, 2, 32, seed=60)
    via_split = ScoringContext(fm, train, val, supernet=lid_split, init="inherit", device="cpu")
    subs = [ScoringContext(fm, train, val, supernet=s, init="inherit", device="cpu") for s in lid_split.subnets]
    space = lid_split.space
    specs = [space.sample(np.random.default_rng(200 + i)) for i in range(6)]
    routed = [lid_split.route(sp) for sp in specs]
    assert set(routed) == {0, 1}
    for name in ("oneshot", "sigeo"):
        est = make_estimator(name)
        for sp, i in zip(specs, routed):
            assert lid_split.regions[i].contains(sp)
            got = est.score([sp], via_split)[0]
            assert got == est.score([sp], subs[i])[0]  # bit for bit
    # an architecture of the other region is scored by the other sub-supernet
    sp = specs[0]
    other = subs[1 - routed[0]]
    region_other = lid_split.regions[1 - routed[0]]
    moved = region_other.sample(space, np.random.default_rng(0))
    assert make_estimator("oneshot").score([moved], other)[0] == make_estimator("oneshot").score([moved], via_split)[0]
    assert lid_split.dense_forward(train[0].dense_features, lid_split.sparse_arch(train[0].sparse_features),
                                   sp).shape == (32,)


def test_gm_split_uses_gradients_and_two_levels_make_four_regions(parent):
    net, fm = parent
    cfg = SplitConfig(method="gm", levels=2, batches=2)
    split = split_supernet(net, batches(fm, 2, 48), cfg, finetune_batches=batches(fm, 2, seed=7), finetune_steps=4)
    rec = split.record
    assert rec.backward_passes == rec.forward_passes > 0 and rec.finetune_steps == 4
    assert len(rec.splits) == 3 and [s["level"] for s in rec.splits] == [1, 2, 2]
    assert len(split.subnets) == 4
    for s in rec.splits:
        assert s["signature_floats"] > 1000  # a gradient per op: the memory GM-NAS pays
    space = split.space
    for seed in range(30):
        assert sum(r.contains(space.sample(np.random.default_rng(seed))) for r in split.regions) == 1
    assert all(s.sparse_arch is net.sparse_arch for s in split.subnets)


def test_region_sampling_stays_inside_and_bad_settings_are_refused():
    space = SearchSpace.load("tiny")
    r = Region().restrict((1, "dense_op"), ("fc", "cross")).restrict((0, "sparse_op"), ("attention",))
    rng = np.random.default_rng(0)
    for _ in range(20):
        spec = r.sample(space, rng)
        assert spec.blocks[1].dense_op in ("fc", "cross") and spec.blocks[0].sparse_op == "attention"
        space.validate(spec)
    with pytest.raises(ValueError, match="method: 'lidd' is not one of"):
        SplitConfig(method="lidd")
    with pytest.raises(ValueError, match="finetune_fraction"):
        SplitConfig(finetune_fraction=1.0)
