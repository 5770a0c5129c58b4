"""Standalone CTR models: SparseArch, CTRModel (every op and switch), params/FLOPs, spec errors, DMP."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn.functional as F

from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.models import CTRModel, SparseArch
from recnas.models.layout import dot_fields, liveness
from recnas.space import DENSE_OPS, SPARSE_OPS
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

from norms import ln, randomize_norms  # tests/norms.py


def small_fm(num_dense: int = 3, num_sparse: int = 4) -> FeatureMap:
    return FeatureMap(
        "test",
        dense=tuple(DenseFeature(f"I{i}") for i in range(num_dense)),
        sparse=tuple(SparseFeature(f"C{i}", 20 + 7 * i) for i in range(num_sparse)),
    )


def chain_spec(dense_op: str, sparse_op: str, e: int = 8, switches: bool = True) -> ArchSpec:
    """Three blocks; every block is live; the middle one runs the ops under test."""
    b0 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec(
        dense_op, sparse_op, dense_dim=8, sparse_dim=3, dense_in=(0, 1), sparse_in=(0, 1),
        dense_sparse_interact=switches, deep_fm=switches,
    )
    b2 = BlockSpec(
        dense_op, sparse_op, dense_dim=12, sparse_dim=2, dense_in=(2,), sparse_in=(1, 2),
        dense_sparse_interact=switches, deep_fm=switches,
    )
    return ArchSpec(embedding_dim=e, blocks=(b0, b1, b2))


def test_sparse_arch_looks_up_each_feature_in_its_own_table():
    fm = small_fm()
    arch = SparseArch(fm, embedding_dim=6)
    assert sorted(arch.ebc.embedding_bags.keys()) == sorted(f"t_{n}" for n in fm.sparse_names)
    batch = random_batch(fm, 5)
    emb = arch(batch.sparse_features)
    assert emb.shape == (5, 4, 6)
    ids = batch.sparse_features.to_dict()
    for k, name in enumerate(fm.sparse_names):
        w = arch.ebc.embedding_bags[f"t_{name}"].weight
        torch.testing.assert_close(emb[:, k], w[ids[name].values()])


@pytest.mark.parametrize("dense_op", DENSE_OPS)
@pytest.mark.parametrize("sparse_op", SPARSE_OPS)
def test_ctr_model_every_op_and_switch_trains(dense_op, sparse_op):
    fm = small_fm()
    torch.manual_seed(0)
    model = CTRModel(fm, chain_spec(dense_op, sparse_op))
    batch = random_batch(fm, 16)
    logits = model(batch.dense_features, batch.sparse_features)
    assert logits.shape == (16,)
    assert torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    names = {n for n, _ in model.named_parameters()}
    # the ops under test and both switches exist in the blocks that run them
    for i in (1, 2):
        assert any(n.startswith(f"dense_arch.net.blocks.{i}.dense_ops.{dense_op}.") for n in names)
        assert any(n.startswith(f"dense_arch.net.blocks.{i}.sparse_ops.{sparse_op}.") for n in names)
        assert f"dense_arch.net.blocks.{i}.deep_fm.weight" in names
        assert f"dense_arch.net.blocks.{i}.interact.weight" in names


def test_fc_efc_block_computes_the_documented_formula():
    fm = small_fm(num_dense=2, num_sparse=3)
    b = BlockSpec("fc", "efc", dense_dim=5, sparse_dim=2, dense_in=(0,), sparse_in=(0,),
                  dense_sparse_interact=True, deep_fm=True)
    model = CTRModel(fm, ArchSpec(embedding_dim=4, blocks=(b,)))
    randomize_norms(model)
    batch = random_batch(fm, 7)
    sd = {k: v.detach() for k, v in model.dense_arch.state_dict().items()}
    x = batch.dense_features
    emb = model.sparse_arch(batch.sparse_features).detach()
    fc = "net.blocks.0.dense_ops.fc."
    y0 = torch.relu(ln(x @ sd[fc + "weight"].T + sd[fc + "bias"], sd[fc + "norm_weight"], sd[fc + "norm_bias"]))
    efc = "net.blocks.0.sparse_ops.efc."
    t0 = torch.einsum("kf,bfe->bke", sd[efc + "weight"], emb) + sd[efc + "bias"][None, :, None]
    t0 = ln(t0, sd[efc + "norm_weight"], sd[efc + "norm_bias"])  # over each field's e units
    fm_term = 0.5 * (t0.sum(1) ** 2 - (t0**2).sum(1))
    dfm, it = "net.blocks.0.deep_fm.", "net.blocks.0.interact."
    y = y0 + ln(fm_term @ sd[dfm + "weight"].T, sd[dfm + "norm_weight"], sd[dfm + "norm_bias"])
    extra = ln(y0 @ sd[it + "weight"].T + sd[it + "bias"], sd[it + "norm_weight"], sd[it + "norm_bias"])
    t = torch.cat([t0, extra[:, None]], 1)
    logit = torch.cat([y, t.flatten(1)], 1) @ sd["net.head.weight"].T + sd["net.head.bias"]
    torch.testing.assert_close(model(x, batch.sparse_features), logit.squeeze(1), atol=1e-5, rtol=1e-5)


def _hand_dot(x: torch.Tensor, s: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """The README's dot, written out with loops: x ``(B, Dx)``, s ``(B, Ns, e)`` -> ``(B, d)``."""
    k = w["field_proj"].shape[0]
    q = torch.stack(
        [sum(w["field_proj"][j, f] * s[:, f] for f in range(s.shape[1])) + w["field_proj_bias"][j] for j in range(k)],
        1,
    )  # (B, k, e)
    px = torch.relu(ln(x @ w["proj"].T, w["proj_norm_weight"], w["proj_norm_bias"]))  # (B, e)
    z = torch.cat([px[:, None], q], 1)  # (B, 1+k, e)
    pairs = torch.stack([(z[:, a] * z[:, c]).sum(-1) for a in range(k + 1) for c in range(a + 1, k + 1)], 1)
    return torch.relu(ln(torch.cat([x, pairs], 1) @ w["weight"].T + w["bias"], w["norm_weight"], w["norm_bias"]))


@pytest.mark.parametrize("dense_dim, k", [(5, 3), (2, 2), (1, 1), (12, 5), (1024, 45)])
def test_dot_block_computes_the_documented_formula(dense_dim, k):
    assert dot_fields(dense_dim) == k == round((2 * dense_dim) ** 0.5)
    fm = small_fm(num_dense=2, num_sparse=3)
    b = BlockSpec("dot", "efc", dense_dim=dense_dim, sparse_dim=2, dense_in=(0,), sparse_in=(0,))
    model = CTRModel(fm, ArchSpec(embedding_dim=4, blocks=(b,)))
    randomize_norms(model)
    batch = random_batch(fm, 7)
    sd = {k: v.detach() for k, v in model.dense_arch.state_dict().items()}
    dot = {n.split(".")[-1]: v for n, v in sd.items() if ".dense_ops.dot." in n}
    # Q projects the 3 input fields to k = round(sqrt(2 d)) fields; W reads [x (2), k(k+1)/2 pairs]
    assert dot["field_proj"].shape == (k, 3) and dot["field_proj_bias"].shape == (k,)
    assert dot["weight"].shape == (dense_dim, 2 + k * (k + 1) // 2)
    x = batch.dense_features
    emb = model.sparse_arch(batch.sparse_features).detach()
    y = _hand_dot(x, emb, dot)
    efc = "net.blocks.0.sparse_ops.efc."
    t = torch.einsum("kf,bfe->bke", sd[efc + "weight"], emb) + sd[efc + "bias"][None, :, None]
    t = ln(t, sd[efc + "norm_weight"], sd[efc + "norm_bias"])
    logit = torch.cat([y, t.flatten(1)], 1) @ sd["net.head.weight"].T + sd["net.head.bias"]
    torch.testing.assert_close(model(x, batch.sparse_features), logit.squeeze(1), atol=1e-5, rtol=1e-5)
    if dense_dim < 3:  # a LayerNorm over 1 unit is constant (its bias), over 2 units +-1: Q cannot matter
        return
    # the projection matters: a different Q bias changes the prediction
    with torch.no_grad():
        model.dense_arch.net.blocks[0].dense_ops["dot"].field_proj_bias.add_(1.0)
    assert not torch.allclose(model(x, batch.sparse_features), logit.squeeze(1), atol=1e-4)


def test_attention_matches_torch_multihead_attention():
    fm = small_fm(num_dense=2, num_sparse=3)
    b = BlockSpec("fc", "attention", dense_dim=5, sparse_dim=3, dense_in=(0,), sparse_in=(0,))
    model = CTRModel(fm, ArchSpec(embedding_dim=8, blocks=(b,)))
    op = model.dense_arch.net.blocks[0].sparse_ops["attention"]
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(op.in_proj_weight)
        mha.in_proj_bias.copy_(op.in_proj_bias)
        mha.out_proj.weight.copy_(op.out_proj_weight)
        mha.out_proj.bias.copy_(op.out_proj_bias)
    s = torch.randn(6, 3, 8)
    plan = model.dense_arch.plan(s.device).blocks[0]
    with torch.no_grad():
        a = torch.einsum("kf,bfe->bke", op.efc_weight, s) + op.efc_bias[None, :, None]
        h = F.layer_norm(a + mha(a, a, a, need_weights=False)[0], (8,), op.norm1_weight, op.norm1_bias)
        f = F.linear(torch.relu(F.linear(h, op.ffn1_weight, op.ffn1_bias)), op.ffn2_weight, op.ffn2_bias)
        want = F.layer_norm(h + f, (8,), op.norm2_weight, op.norm2_bias)
        torch.testing.assert_close(op(s, plan), want, atol=1e-5, rtol=1e-5)


def test_every_op_of_the_space_has_one_implementation():
    """The op names are listed once (recnas.space.space); the models implement exactly those."""
    from recnas.models import layout
    from recnas.models.ops import DENSE_OP_CLASSES, SPARSE_OP_CLASSES

    assert tuple(DENSE_OP_CLASSES) == DENSE_OPS == layout.DENSE_OPS
    assert tuple(SPARSE_OP_CLASSES) == SPARSE_OPS == layout.SPARSE_OPS
    assert layout.READS_SPARSE < set(DENSE_OPS)


def test_num_params_is_the_sum_of_numels():
    fm = small_fm()
    for dense_op in DENSE_OPS:
        model = CTRModel(fm, chain_spec(dense_op, "attention"))
        total = sum(p.numel() for p in model.parameters())
        dense = sum(p.numel() for p in model.dense_arch.parameters())
        assert model.num_params() == total
        assert model.num_params(include_embeddings=False) == dense
        assert total - dense == sum(f.num_embeddings for f in fm.sparse) * 8


def test_flops_per_example_matches_hand_count_for_fc_only_spec():
    fm = small_fm(num_dense=3, num_sparse=4)  # 4 fields, e = 8
    b0 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=5, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=2, dense_in=(0, 1), sparse_in=(1,))
    model = CTRModel(fm, ArchSpec(embedding_dim=8, blocks=(b0, b1)))
    macs = (
        16 * 3 + 5 * 4 * 8  # block 0: fc 3 -> 16, efc 4 -> 5 fields of width 8
        + 8 * (3 + 16) + 2 * 5 * 8  # block 1: fc [x0, y1] -> 8, efc 5 -> 2 fields
        + (8 + 2 * 8)  # head over [y (8), flat t (2 x 8)]
    )
    pooling = 4 * 8
    assert model.flops_per_example() == 2 * macs + pooling


def test_flops_per_example_matches_hand_count_for_dot_spec():
    fm = small_fm(num_dense=3, num_sparse=4)  # 4 fields, e = 8
    b0 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=5, dense_in=(0,), sparse_in=(0,),
                   dense_sparse_interact=True)
    b1 = BlockSpec("dot", "efc", dense_dim=8, sparse_dim=2, dense_in=(0, 1), sparse_in=(0, 1))
    model = CTRModel(fm, ArchSpec(embedding_dim=8, blocks=(b0, b1)))
    # block 1's dot: x = [x0 (3), y1 (16)] = 19 wide; s = [4 fields; 5 + 1 fields] = 10 fields;
    # k = round(sqrt(16)) = 4 projected fields, z has 5 fields -> 10 pairs
    dot = (
        8 * 19  # P x: (e=8) x 19
        + 4 * 10 * 8  # Q s: 4 output fields x 10 input fields, per embedding column
        + 10 * 8  # the 10 pairwise dot products of width 8
        + 8 * (19 + 10)  # W [x, p] -> 8
    )
    macs = (
        16 * 3 + 5 * 4 * 8 + 16 * 8  # block 0: fc 3 -> 16, efc 4 -> 5 fields, interact 16 -> e
        + dot + 2 * 10 * 8  # block 1: dot, efc 10 -> 2 fields
        + (8 + 2 * 8)  # head over [y (8), flat t (2 x 8)]
    )
    pooling = 4 * 8
    assert model.flops_per_example() == 2 * macs + pooling


def test_dead_outputs_are_not_built_and_all_parameters_train():
    fm = small_fm()
    # block 0's sparse output and block 1's dense output are never read downstream
    b0 = BlockSpec("fc", "attention", dense_dim=8, sparse_dim=4, dense_in=(0,), sparse_in=(0,), deep_fm=False)
    b1 = BlockSpec("dot", "efc", dense_dim=8, sparse_dim=3, dense_in=(1,), sparse_in=(0,), deep_fm=True)
    b2 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=3, dense_in=(1,), sparse_in=(2,))
    spec = ArchSpec(embedding_dim=8, blocks=(b0, b1, b2))
    live, _ = liveness(spec)
    assert (live[0].dense_op, live[0].sparse_op) == (True, False)
    assert (live[1].dense_op, live[1].sparse_op, live[1].deep_fm) == (False, True, False)
    model = CTRModel(fm, spec)
    names = {n for n, _ in model.named_parameters()}
    assert not any(".blocks.0.sparse_ops." in n or ".blocks.1.dense_ops." in n or ".blocks.1.deep_fm" in n
                   for n in names)
    batch = random_batch(fm, 8)
    model(batch.dense_features, batch.sparse_features).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_feature_map_without_dense_features_uses_mean_of_embeddings():
    fm = small_fm(num_dense=0)
    b = BlockSpec("fc", "efc", dense_dim=5, sparse_dim=2, dense_in=(0,), sparse_in=(0,))
    model = CTRModel(fm, ArchSpec(embedding_dim=4, blocks=(b,)))
    randomize_norms(model)
    assert model.dense_arch.net.blocks[0].dense_ops["fc"].weight.shape == (5, 4)  # reads (B, e)
    batch = random_batch(fm, 6)
    assert batch.dense_features.shape == (6, 0)
    logits = model(batch.dense_features, batch.sparse_features)
    emb = model.sparse_arch(batch.sparse_features)
    sd = model.dense_arch.state_dict()
    fc = "net.blocks.0.dense_ops.fc."
    h = emb.mean(1) @ sd[fc + "weight"].T + sd[fc + "bias"]
    y = torch.relu(ln(h, sd[fc + "norm_weight"], sd[fc + "norm_bias"]))
    efc = "net.blocks.0.sparse_ops.efc."
    t = torch.einsum("kf,bfe->bke", sd[efc + "weight"], emb) + sd[efc + "bias"][None, :, None]
    t = ln(t, sd[efc + "norm_weight"], sd[efc + "norm_bias"])
    want = torch.cat([y, t.flatten(1)], 1) @ sd["net.head.weight"].T + sd["net.head.bias"]
    torch.testing.assert_close(logits, want.squeeze(1), atol=1e-5, rtol=1e-5)
    logits.sum().backward()


def test_bad_specs_are_rejected_naming_the_choice():
    fm = small_fm()
    bad_op = ArchSpec(8, (BlockSpec("conv", "efc", 8, 2, (0,), (0,)),))
    with pytest.raises(SpecError, match=r"blocks\[0\]\.dense_op: unknown op 'conv'"):
        CTRModel(fm, bad_op)
    bad_sparse = ArchSpec(8, (BlockSpec("fc", "lstm", 8, 2, (0,), (0,)),))
    with pytest.raises(SpecError, match=r"blocks\[0\]\.sparse_op: unknown op 'lstm'"):
        CTRModel(fm, bad_sparse)
    odd_attention = ArchSpec(7, (BlockSpec("fc", "attention", 8, 2, (0,), (0,)),))
    with pytest.raises(SpecError, match=r"blocks\[0\]\.sparse_op: attention .* embedding_dim"):
        CTRModel(fm, odd_attention)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_meta_built_model_shards_with_distributed_model_parallel():
    import torch.distributed as dist
    from torchrec.distributed.model_parallel import DistributedModelParallel

    fm = small_fm()
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(_free_port())
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model = CTRModel(fm, chain_spec("dot", "attention"), device=torch.device("meta"))
        dmp = DistributedModelParallel(model, device=torch.device("cpu"))
        assert not any(p.is_meta for p in dmp.parameters())
        params = dict(dmp.named_parameters())
        # materialised by each module's reset_parameters (LayerNorm weight 1, attention in-proj bias 0)
        norm = next(p for n, p in params.items() if n.endswith("blocks.1.sparse_ops.attention.norm1_weight"))
        assert torch.equal(norm, torch.ones_like(norm))
        assert all(torch.isfinite(p).all() for p in params.values())
        batch = random_batch(fm, 8)
        logits = dmp(batch.dense_features, batch.sparse_features)
        assert logits.shape == (8,) and torch.isfinite(logits).all()
        F.binary_cross_entropy_with_logits(logits, batch.labels).backward()
        dense = [p for n, p in dmp.named_parameters() if "dense_arch" in n]
        assert dense and all(p.grad is not None and torch.isfinite(p.grad).all() for p in dense)
    finally:
        dist.destroy_process_group()


def test_functional_key_leaves_out_exactly_the_choices_that_are_not_built():
    """Changing a dead op's type, width or inputs, or an unread switch, keeps the functional key and
    builds the same model (same parameters, same output under the same seed); a live change does not."""
    from dataclasses import replace

    from recnas.models.layout import functional_key

    fm = small_fm()
    b0 = BlockSpec("fc", "attention", dense_dim=8, sparse_dim=4, dense_in=(0,), sparse_in=(0,), deep_fm=False)
    b1 = BlockSpec("dot", "efc", dense_dim=8, sparse_dim=3, dense_in=(1,), sparse_in=(0,), deep_fm=True)
    b2 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=3, dense_in=(1,), sparse_in=(2,))
    spec = ArchSpec(embedding_dim=8, blocks=(b0, b1, b2))  # block 0's sparse op, block 1's dense op and deep_fm are dead
    twin = ArchSpec(embedding_dim=8, blocks=(
        replace(b0, sparse_op="efc", sparse_dim=2),
        replace(b1, dense_op="fc", dense_dim=16, dense_in=(0, 1), deep_fm=False),
        b2,
    ))
    assert twin.key() != spec.key() and functional_key(twin) == functional_key(spec)
    batch = random_batch(fm, 8)
    outs = []
    for s in (spec, twin):
        torch.manual_seed(0)
        model = CTRModel(fm, s)
        outs.append((model.state_dict(), model(batch.dense_features, batch.sparse_features)))
    (sd_a, y_a), (sd_b, y_b) = outs
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)
    for live_change in (replace(b2, dense_dim=16), replace(b2, sparse_in=(1, 2)), replace(b2, deep_fm=True)):
        other = ArchSpec(embedding_dim=8, blocks=(b0, b1, live_change))
        assert functional_key(other) != functional_key(spec)
    assert functional_key(ArchSpec(embedding_dim=16, blocks=(b0, b1, b2))) != functional_key(spec)
