"""Sliced supernet updates (recnas.train.sliced): the warm-up's fast path equals the full-tensor
update bit for bit -- weights, Adagrad state, losses -- and slice leaves leave the forward unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.models import Supernet
from recnas.models.ops import slice_leaves
from recnas.space.space import SearchSpace
from recnas.train.distributed import init_distributed, make_optimizer, shard
from recnas.train.loop import train_step
from recnas.train.sliced import SlicedOptimizer, dense_adagrad_of
from recnas.train.warmup import WarmupConfig, load_supernet, warmup


def _fm() -> FeatureMap:
    return FeatureMap("t", (DenseFeature("I1"), DenseFeature("I2"), DenseFeature("I3")),
                      tuple(SparseFeature(f"C{i}", 50) for i in range(1, 5)))


def _batches(fm: FeatureMap, n: int, size: int = 32) -> list:
    g = torch.Generator().manual_seed(1)
    return [random_batch(fm, size, g) for _ in range(n)]


def _trained(fm, space, specs, batches, sliced: bool):
    env = init_distributed()
    torch.manual_seed(0)
    model = shard(Supernet(fm, space, device=torch.device("meta")), env, table_lr=0.05, supernet=True)
    opt = make_optimizer(model, dense_lr=0.05, eps=1e-2)
    step_opt = SlicedOptimizer(opt, env) if sliced else opt
    losses = []
    for spec, b in zip(specs, batches):
        def forward(m, batch, spec=spec):
            if sliced:
                with step_opt.recording():
                    return m(batch.dense_features, batch.sparse_features, spec)
            return m(batch.dense_features, batch.sparse_features, spec)

        losses.append(train_step(model, step_opt, b, env, forward).loss)
    return model, dense_adagrad_of(opt), losses


def test_sliced_steps_equal_full_tensor_adagrad_bit_for_bit() -> None:
    fm, space = _fm(), SearchSpace.load("tiny")
    rng = np.random.default_rng(0)
    specs = [space.largest(rng)] + [space.sample(rng) for _ in range(7)]
    batches = _batches(fm, len(specs))
    full, full_opt, full_losses = _trained(fm, space, specs, batches, sliced=False)
    fast, fast_opt, fast_losses = _trained(fm, space, specs, batches, sliced=True)
    assert fast_losses == full_losses
    a, b = full.state_dict(), fast.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        ta, tb = a[k], b[k]
        if hasattr(ta, "local_shards"):  # sharded tables
            ta, tb = ta.local_shards()[0].tensor, tb.local_shards()[0].tensor
        assert torch.equal(ta, tb), k
    pa = dict(full.named_parameters())
    pb = dict(fast.named_parameters())
    changed = 0
    for n, p in pa.items():
        if p not in full_opt.state:
            continue
        sa, sb = full_opt.state[p], fast_opt.state[pb[n]]
        assert torch.equal(sa["sum"], sb["sum"]), n
        assert torch.equal(sa["step"], sb["step"]), n
        changed += int(sa["step"].item() > 0)
    assert changed > 10  # the subnets did update many shared tensors


def test_slice_leaves_keep_the_forward_and_give_parameters_no_full_gradient() -> None:
    fm, space = _fm(), SearchSpace.load("tiny")
    torch.manual_seed(0)
    net = Supernet(fm, space)
    spec = space.sample(np.random.default_rng(3))
    b = _batches(fm, 1)[0]
    ref = net(b.dense_features, b.sparse_features, spec)
    with slice_leaves() as records:
        out = net(b.dense_features, b.sparse_features, spec)
    assert torch.equal(out, ref)
    assert records and all(r.leaf.is_leaf and r.leaf.requires_grad for r in records)
    out.sum().backward()
    sliced = {id(r.param) for r in records}
    assert all(p.grad is None for p in net.dense_arch.parameters() if id(p) in sliced)
    # the leaf's gradient is the slice of the full gradient (zero elsewhere)
    net.zero_grad(set_to_none=True)
    net(b.dense_features, b.sparse_features, spec).sum().backward()
    from recnas.models.ops import _take

    for r in records:
        assert torch.allclose(r.leaf.grad, _take(r.param.grad, r.rows, r.cols), atol=1e-6)
    with torch.no_grad(), slice_leaves() as none:  # extraction (no grad) is not recorded
        net.extract_dense(spec)
    assert none == []


def test_warmup_sliced_equals_reference_path_and_rejects_weight_decay(tmp_path: Path) -> None:
    fm, space = _fm(), SearchSpace.load("tiny")
    data = _batches(fm, 6)
    cfg = WarmupConfig(max_steps=6, lr=0.05, table_lr=0.05, progress=False)
    ref = warmup(fm, space, data, config=cfg, out_dir=tmp_path / "ref", sliced_updates=False)
    fast = warmup(fm, space, data, config=cfg, out_dir=tmp_path / "fast")
    assert fast.losses == ref.losses
    a, b = load_supernet(tmp_path / "ref").state_dict(), load_supernet(tmp_path / "fast").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="weight_decay"):
        SlicedOptimizer(torch.optim.Adagrad([p], lr=0.1, weight_decay=0.1), init_distributed())


def test_column_runs_gather_and_put_back_like_index_ops() -> None:
    from recnas.models.ops import MAX_RUNS, _take, index_runs
    from recnas.train.sliced import _put

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 300, generator=g)
    few = torch.cat([torch.arange(0, 7), torch.arange(40, 90), torch.arange(299, 300)])
    many = torch.arange(0, 300, 2)  # 150 runs of one: gathered element by element
    assert index_runs(few) == ((0, 0, 7), (40, 7, 50), (299, 57, 1))
    assert index_runs(many) is None and len(many) > MAX_RUNS
    for rows in (None, 4, torch.tensor([1, 3, 5])):
        for cols in (few, many):
            base = w if rows is None else (w[:rows] if isinstance(rows, int) else w.index_select(0, rows))
            got = _take(w, rows, cols)
            assert torch.equal(got, base.index_select(1, cols))
            assert got.data_ptr() != w.data_ptr()  # a copy, never a view of w
            v = torch.randn(got.shape, generator=g)
            a, b = w.clone(), w.clone()
            _put(a, rows, cols, v)
            if rows is None:
                b.index_copy_(1, cols, v)
            elif isinstance(rows, int):
                b[:rows].index_copy_(1, cols, v)
            else:
                block = b.index_select(0, rows)
                block.index_copy_(1, cols, v)
                b.index_copy_(0, rows, block)
            assert torch.equal(a, b)
