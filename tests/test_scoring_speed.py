"""The scoring speed-ups keep every value: extraction without an initialisation to overwrite gives the
supernet's slices as tensors of their own, and ZiCo's statistics with scratch buffers equal the
textbook formula element for element (constant, -0 and underflowing coordinates included)."""

from __future__ import annotations

import numpy as np
import torch

from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.estimators import ScoringContext, SiGeo
from recnas.estimators.zico import _snr
from recnas.models import Supernet
from recnas.space.space import SearchSpace


def _fm() -> FeatureMap:
    return FeatureMap("t", (DenseFeature("I1"), DenseFeature("I2")), tuple(SparseFeature(f"C{i}", 40) for i in range(3)))


def _snr_formula(gs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per coordinate: (varies and std > 0, mean |g| / std), summed from zeros, one op at a time."""
    n = len(gs)
    keep = torch.zeros_like(gs[0], dtype=torch.bool)
    mean, mean_abs, var = torch.zeros_like(gs[0]), torch.zeros_like(gs[0]), torch.zeros_like(gs[0])
    for g in gs:
        keep = keep | (g != gs[0])
        mean = mean + g
        mean_abs = mean_abs + g.abs()
    mean, mean_abs = mean / n, mean_abs / n
    for g in gs:
        var = var + (g - mean) * (g - mean)
    std = torch.sqrt(var / n)
    keep = keep & (std > 0)
    return keep, mean_abs / torch.where(keep, std, torch.ones_like(std))


def test_snr_equals_the_formula_bit_for_bit() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 4, 5):
        gs = [torch.randn(257, generator=g) * 10.0 ** torch.randint(-3, 3, (257,), generator=g) for _ in range(n)]
        for x in gs:
            x[:7] = 1.5  # constant across minibatches
            x[7:9] = -0.0
            x[9:11] = 1e-38 * torch.rand(2, generator=g)  # std underflows
        k2, r2 = _snr_formula(gs)
        for chunk in (64, 100, 10_000):  # in blocks (the last one short) and whole
            keep, ratio = _snr([x.clone() for x in gs], chunk=chunk)
            assert torch.equal(keep, k2)
            assert torch.equal(ratio, r2)
        assert not keep[:9].any()


def test_extract_dense_copies_exact_slices_and_owns_them() -> None:
    fm, space = _fm(), SearchSpace.load("tiny")
    torch.manual_seed(0)
    net = Supernet(fm, space)
    rng = np.random.default_rng(0)
    b = random_batch(fm, 16, torch.Generator().manual_seed(1))
    emb = net.sparse_arch(b.sparse_features)
    for _ in range(6):
        spec = space.sample(rng)
        arch = net.extract_dense(spec)
        state = net.dense_arch.sliced_state(net.plan(spec, torch.device("cpu")))
        own = dict(arch.named_parameters())
        assert own.keys() == {f"net.{k}" for k in state}
        for k, v in state.items():
            p = own[f"net.{k}"]
            assert torch.equal(p, v) and p.is_contiguous() and p.requires_grad
        sn_ptrs = {p.untyped_storage().data_ptr() for p in net.parameters()}
        assert not sn_ptrs & {p.untyped_storage().data_ptr() for p in arch.parameters()}
        e = emb[..., : spec.embedding_dim]
        assert torch.equal(arch(b.dense_features, e), net.dense_forward(b.dense_features, emb, spec))
        before = [p.detach().clone() for p in net.parameters()]
        with torch.no_grad():
            for p in arch.parameters():
                p.add_(1.0)  # writing the extracted copy leaves the supernet alone
        assert all(torch.equal(x, p) for x, p in zip(before, net.parameters()))


def test_sigeo_scores_are_deterministic_across_extractions() -> None:
    fm, space = _fm(), SearchSpace.load("tiny")
    torch.manual_seed(0)
    net = Supernet(fm, space)
    g = torch.Generator().manual_seed(2)
    ctx = ScoringContext(fm, [random_batch(fm, 32, g) for _ in range(3)], supernet=net, init="inherit", seed=0)
    specs = [space.sample(np.random.default_rng(s)) for s in range(4)]
    a, b = SiGeo().score(specs, ctx), SiGeo().score(specs[::-1], ctx)[::-1]
    assert np.array_equal(a, b) and np.isfinite(a).all()
