"""A block's normalisation option (``BlockSpec.norm``) and the library presets built with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import recnas.models.ops as ops
from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.export.architecture import baseline_architecture
from recnas.models import CTRModel, Supernet
from recnas.space import DENSE_OPS, SPARSE_OPS, SearchSpace
from recnas.space.presets import LIBRARY_PRESETS, PRESETS, dcn_lib, deepfm_lib
from recnas.space.spec import NORMS, ArchSpec, BlockSpec, SpecError

from norms import ln  # tests/norms.py


def small_fm(num_dense: int = 3, num_sparse: int = 4) -> FeatureMap:
    return FeatureMap(
        "test",
        dense=tuple(DenseFeature(f"I{i}") for i in range(num_dense)),
        sparse=tuple(SparseFeature(f"C{i}", 20 + 7 * i) for i in range(num_sparse)),
    )


def spec_of(dense_op: str, sparse_op: str, norm: str) -> ArchSpec:
    """Three live blocks, the ops under test in blocks 1 and 2 with both switches on."""
    b0 = BlockSpec("fc", "efc", 16, 4, (0,), (0,), norm=norm)
    b1 = BlockSpec(dense_op, sparse_op, 8, 4, (0, 1), (0, 1), dense_sparse_interact=True, deep_fm=True, norm=norm)
    b2 = BlockSpec(dense_op, sparse_op, 16, 8, (2,), (1, 2), dense_sparse_interact=True, deep_fm=True, norm=norm)
    return ArchSpec(embedding_dim=8, blocks=(b0, b1, b2))


def norm_params(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if "norm" in n.rsplit(".", 1)[-1]]


def test_the_default_stays_out_of_the_serialisation_and_the_key() -> None:
    implicit = spec_of("fc", "efc", "layernorm")
    explicit = ArchSpec(8, tuple(BlockSpec(**{**b.to_dict(), "norm": "layernorm"}) for b in implicit.blocks))
    assert explicit == implicit and explicit.key() == implicit.key() and explicit.to_json() == implicit.to_json()
    assert all("norm" not in b for b in implicit.to_dict()["blocks"])
    off = spec_of("fc", "efc", "none")
    assert all(b["norm"] == "none" for b in off.to_dict()["blocks"])
    assert ArchSpec.from_json(off.to_json()) == off and off.key() != implicit.key()
    # the in-space presets' keys are the ones their committed runs were recorded under
    ctr = SearchSpace.load("ctr_extended")
    assert PRESETS["deepfm"](ctr).key() == "89e2825fbc093faa"
    assert PRESETS["dcnv2"](ctr).key() == "4e9d1a4c67a733ca"


def test_a_bad_norm_is_rejected_naming_the_key() -> None:
    with pytest.raises(SpecError, match=r"norm: expected one of \['layernorm', 'none'\], got 'batchnorm'"):
        BlockSpec("fc", "efc", 8, 4, (0,), (0,), norm="batchnorm")
    d = spec_of("fc", "efc", "none").to_dict()
    d["blocks"][1]["norm"] = "LayerNorm"
    with pytest.raises(SpecError, match=r"blocks\[1\]: norm: expected one of"):
        ArchSpec.from_dict(d)
    assert NORMS == ("layernorm", "none")


def test_the_shipped_spaces_and_their_supernets_hold_layernorm_blocks_only() -> None:
    tiny = SearchSpace.load("tiny")
    arch = PRESETS["dlrm"](tiny)
    off = ArchSpec(arch.embedding_dim, tuple(BlockSpec(**{**b.to_dict(), "norm": "none"}) for b in arch.blocks),
                   space="tiny")
    with pytest.raises(SpecError, match=r"blocks\[0\]\.norm: 'none' not in \['layernorm'\] \(space 'tiny'\)"):
        tiny.validate(off)
    fm = small_fm()
    net = Supernet(fm, tiny)
    batch = random_batch(fm, 4)
    with pytest.raises(SpecError, match=r"blocks\[0\]\.norm"):
        net(batch.dense_features, batch.sparse_features, off)


@pytest.mark.parametrize("dense_op", DENSE_OPS)
@pytest.mark.parametrize("sparse_op", SPARSE_OPS)
def test_norm_none_is_the_same_network_with_every_layernorm_as_the_identity(dense_op, sparse_op, monkeypatch) -> None:
    fm = small_fm()
    batch = random_batch(fm, 16, torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    with_ln = CTRModel(fm, spec_of(dense_op, sparse_op, "layernorm"))
    torch.manual_seed(0)
    without = CTRModel(fm, spec_of(dense_op, sparse_op, "none"))
    # no LayerNorm weights but attention's own two; every other weight identical at the same seed
    kept = [n for n in norm_params(without)]
    assert all(".sparse_ops.attention.norm" in n for n in kept)
    assert norm_params(with_ln) and set(kept) < set(norm_params(with_ln))
    big = dict(with_ln.named_parameters())
    for n, p in without.named_parameters():
        assert torch.equal(p, big[n]), n
    assert {n for n in big} - {n for n, _ in without.named_parameters()} == set(norm_params(with_ln)) - set(kept)
    with torch.no_grad():
        y_ln = with_ln(batch.dense_features, batch.sparse_features)
        y_none = without(batch.dense_features, batch.sparse_features)
        assert (y_ln - y_none).abs().max() > 1e-4  # the LayerNorms do something
        monkeypatch.setattr(ops, "_ln", lambda h, w, b: h)  # every linear map's LayerNorm as the identity
        torch.testing.assert_close(with_ln(batch.dense_features, batch.sparse_features), y_none, rtol=0, atol=0)
    F.binary_cross_entropy_with_logits(without(batch.dense_features, batch.sparse_features), batch.labels).backward()
    assert all(p.grad is not None for n, p in without.named_parameters() if "sparse_arch" not in n)


def test_the_default_computes_nasrecs_layernorm_formula() -> None:
    """sum -> fc with deep_fm, efc sparse ops: the documented formula with every LayerNorm written out."""
    fm = small_fm()
    spec = ArchSpec(4, (BlockSpec("sum", "efc", 6, 3, (0,), (0,)), BlockSpec("fc", "efc", 5, 2, (1,), (0,), deep_fm=True)))
    torch.manual_seed(3)
    model = CTRModel(fm, spec)
    batch = random_batch(fm, 8, torch.Generator().manual_seed(2))
    p = dict(model.dense_arch.net.named_parameters())
    with torch.no_grad():
        x, emb = batch.dense_features, model.sparse_arch(batch.sparse_features)
        s = emb.reshape(8, -1)
        a = F.relu(ln(x @ p["blocks.0.dense_ops.sum.weight1"].T + p["blocks.0.dense_ops.sum.bias1"],
                      p["blocks.0.dense_ops.sum.norm1_weight"], p["blocks.0.dense_ops.sum.norm1_bias"]))
        b = F.relu(ln(s @ p["blocks.0.dense_ops.sum.weight2"].T + p["blocks.0.dense_ops.sum.bias2"],
                      p["blocks.0.dense_ops.sum.norm2_weight"], p["blocks.0.dense_ops.sum.norm2_bias"]))
        h = F.relu(ln((a + b) @ p["blocks.1.dense_ops.fc.weight"].T + p["blocks.1.dense_ops.fc.bias"],
                      p["blocks.1.dense_ops.fc.norm_weight"], p["blocks.1.dense_ops.fc.norm_bias"]))
        t = torch.einsum("kf,bfe->bke", p["blocks.1.sparse_ops.efc.weight"], emb) + p["blocks.1.sparse_ops.efc.bias"][:, None]
        t = ln(t, p["blocks.1.sparse_ops.efc.norm_weight"], p["blocks.1.sparse_ops.efc.norm_bias"])
        fmv = 0.5 * (t.sum(1) ** 2 - (t ** 2).sum(1))
        y = h + ln(fmv @ p["blocks.1.deep_fm.weight"].T, p["blocks.1.deep_fm.norm_weight"], p["blocks.1.deep_fm.norm_bias"])
        logit = torch.cat([y, t.reshape(8, -1)], 1) @ p["head.weight"].T + p["head.bias"]
        torch.testing.assert_close(model(x, batch.sparse_features), logit.squeeze(1), rtol=1e-5, atol=1e-5)


def test_library_presets_build_without_layernorm_and_are_baselines() -> None:
    fm = small_fm(num_dense=13, num_sparse=26)
    deepfm, dcn = deepfm_lib(), dcn_lib()
    assert [(b.dense_op, b.dense_dim) for b in deepfm.blocks] == [("sum", 256), ("fc", 128)]
    assert deepfm.blocks[-1].deep_fm and deepfm.blocks[-1].sparse_in == (0,)
    assert [(b.dense_op, b.dense_in) for b in dcn.blocks] == [("sum", (0,)), ("cross", (1,)), ("fc", (1,)), ("fc", (2, 3))]
    for name, fn in LIBRARY_PRESETS.items():
        arch = fn()
        assert baseline_architecture(name) == arch and arch.space == ""
        assert all(b.norm == "none" for b in arch.blocks)
        model = CTRModel(fm, arch)
        assert norm_params(model) == []
        batch = random_batch(fm, 8)
        out = model(batch.dense_features, batch.sparse_features)
        assert out.shape == (8,) and torch.isfinite(out).all()
        assert not SearchSpace.load("ctr_extended").contains(arch)  # 7 LayerNorm blocks there
