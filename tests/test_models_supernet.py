"""The weight-sharing supernet: every op/switch, exact extraction, sparse gradients, spec errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recnas.data.batch import random_batch
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature
from recnas.models import CTRModel, Supernet
from recnas.space import DENSE_OPS, SPARSE_OPS, SearchSpace
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

from norms import ln, randomize_norms  # tests/norms.py


def small_fm(num_dense: int = 3, num_sparse: int = 4) -> FeatureMap:
    return FeatureMap(
        "test",
        dense=tuple(DenseFeature(f"I{i}") for i in range(num_dense)),
        sparse=tuple(SparseFeature(f"C{i}", 20 + 7 * i) for i in range(num_sparse)),
    )


def tiny_two_dims() -> SearchSpace:
    """The tiny space with a second embedding dim, so elastic e (and attention heads) is exercised."""
    d = SearchSpace.load("tiny").to_dict()
    return SearchSpace.from_dict({**d, "name": "tiny_e48", "embedding_dims": [4, 8]})


def tiny_spec(dense_op: str, sparse_op: str, e: int = 8) -> ArchSpec:
    """Every block live; blocks 1 and 2 run the ops under test with both switches on."""
    b0 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec(dense_op, sparse_op, 8, 4, (0, 1), (0, 1), dense_sparse_interact=True, deep_fm=True)
    b2 = BlockSpec(dense_op, sparse_op, 16, 8, (2,), (1, 2), dense_sparse_interact=True, deep_fm=True)
    return ArchSpec(embedding_dim=e, blocks=(b0, b1, b2))


def sgd_steps(net: Supernet, fm: FeatureMap, space: SearchSpace, steps: int, seed: int) -> None:
    """A few training steps on random subnets so the shared weights are no longer at init."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for k in range(steps):
        batch = random_batch(fm, 32, torch.Generator().manual_seed(seed + k))
        loss = F.binary_cross_entropy_with_logits(
            net(batch.dense_features, batch.sparse_features, space.sample(rng)), batch.labels
        )
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("dense_op", DENSE_OPS)
@pytest.mark.parametrize("sparse_op", SPARSE_OPS)
def test_every_op_and_switch_trains_and_only_used_weights_get_gradients(dense_op, sparse_op):
    fm = small_fm()
    space = tiny_two_dims()
    torch.manual_seed(0)
    net = Supernet(fm, space)
    spec = tiny_spec(dense_op, sparse_op, e=4)
    space.validate(spec)
    batch = random_batch(fm, 16)
    logits = net(batch.dense_features, batch.sparse_features, spec)
    assert logits.shape == (16,) and torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, batch.labels).backward()

    used = ["dense_arch.head.", "dense_arch.blocks.0.dense_ops.fc.", "dense_arch.blocks.0.sparse_ops.efc."]
    for i in (1, 2):
        pre = f"dense_arch.blocks.{i}."
        used += [pre + f"dense_ops.{dense_op}.", pre + f"sparse_ops.{sparse_op}.", pre + "deep_fm.", pre + "interact."]
    for name, p in net.dense_arch.named_parameters(prefix="dense_arch"):
        if any(name.startswith(u) for u in used):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, f"{name}: used but all-zero gradient"
        else:
            assert p.grad is None, f"{name} is not used by the spec but got a gradient"
    assert {n for n, _ in net.subnet_parameters(spec)} == {
        n for n, p in net.named_parameters() if p.grad is not None and not n.startswith("sparse_arch")
    }
    # the subnet reads the tables' first e = 4 of 8 columns only
    for t in net.sparse_arch.ebc.embedding_bags.values():
        assert t.weight.grad[:, :4].abs().sum() > 0
        assert torch.equal(t.weight.grad[:, 4:], torch.zeros_like(t.weight.grad[:, 4:]))


def test_extract_equals_supernet_on_many_random_tiny_specs():
    fm = small_fm()
    space = tiny_two_dims()
    torch.manual_seed(1)
    net = Supernet(fm, space)
    randomize_norms(net)
    sgd_steps(net, fm, space, steps=5, seed=3)
    rng = np.random.default_rng(7)
    batch = random_batch(fm, 32, torch.Generator().manual_seed(11))
    emb = net.sparse_arch(batch.sparse_features)
    outs = []
    with torch.no_grad():
        for _ in range(40):
            spec = space.sample(rng)
            want = net(batch.dense_features, batch.sparse_features, spec)
            model = net.extract(spec)
            assert isinstance(model, CTRModel)
            torch.testing.assert_close(model(batch.dense_features, batch.sparse_features), want, atol=1e-5, rtol=1e-5)
            dense = net.extract_dense(spec)
            torch.testing.assert_close(
                dense(batch.dense_features, emb[..., : spec.embedding_dim]), want, atol=1e-5, rtol=1e-5
            )
            assert model.num_params(include_embeddings=False) == sum(p.numel() for p in dense.parameters())
            # every LayerNorm of the extracted model holds the first d entries of the supernet's
            big = dict(net.dense_arch.named_parameters())
            norms = [(n, p) for n, p in model.dense_arch.net.named_parameters() if "norm" in n.rsplit(".", 1)[-1]]
            assert any(".dense_ops." in n for n, _ in norms)
            for n, p in norms:
                assert torch.equal(p, big[n][: p.shape[0]]), n
            outs.append(want)
    # different specs really are different networks
    assert min((a - b).abs().max().item() for a, b in zip(outs, outs[1:])) > 1e-4


def all_dot(spec: ArchSpec) -> ArchSpec:
    """``spec`` with every block's dense op replaced by ``dot`` (same widths and connections)."""
    return ArchSpec.from_dict({**spec.to_dict(), "blocks": [{**b.to_dict(), "dense_op": "dot"} for b in spec.blocks]})


def with_embedding_dims(space: SearchSpace, dims: list[int]) -> SearchSpace:
    d = space.to_dict()
    return SearchSpace.from_dict({**d, "name": f"{d['name']}_e", "embedding_dims": dims})


@pytest.mark.parametrize("space_name", ["tiny", "nasrec_small", "ctr_extended"])
def test_extract_equals_supernet_on_paper_scale_spaces(space_name):
    fm = small_fm(num_dense=3, num_sparse=5)
    space = SearchSpace.load(space_name)
    if len(space.embedding_dims) == 1:  # add a smaller embedding dim so elastic e is exercised too
        space = with_embedding_dims(space, [space.embedding_dims[0] // 2, space.embedding_dims[0]])
    e_max = max(space.embedding_dims)
    torch.manual_seed(2)
    net = Supernet(fm, space)
    randomize_norms(net)
    rng = np.random.default_rng(5)
    batch = random_batch(fm, 8)
    emb = net.sparse_arch(batch.sparse_features)
    specs = [space.sample(rng) for _ in range(4)]
    specs += [all_dot(s) for s in specs[:2]]  # every block a dot, at sampled widths and connections
    for e in space.embedding_dims[:-1]:  # every embedding dim below the tables' width
        specs += [ArchSpec.from_dict({**s.to_dict(), "embedding_dim": e}) for s in (specs[0], specs[4])]
    assert any(s.embedding_dim < e_max for s in specs)
    with torch.no_grad():
        for spec in specs:
            space.validate(spec)
            want = net(batch.dense_features, batch.sparse_features, spec)
            got = net.extract(spec)(batch.dense_features, batch.sparse_features)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
            dense = net.extract_dense(spec)
            torch.testing.assert_close(
                dense(batch.dense_features, emb[..., : spec.embedding_dim]), want, atol=1e-5, rtol=1e-5
            )
    del net


def test_dot_uses_the_first_k_projected_fields_and_their_pair_columns():
    fm = small_fm(num_dense=3, num_sparse=4)
    space = SearchSpace.load("tiny")  # dense dims 8, 16 -> k = 4, k_max = round(sqrt(32)) = 6
    net = Supernet(fm, space)
    randomize_norms(net)
    b0 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec("dot", "efc", dense_dim=8, sparse_dim=4, dense_in=(1,), sparse_in=(0, 1))
    b2 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(2,), sparse_in=(2,))
    spec = ArchSpec(8, (b0, b1, b2))
    big = net.dense_arch.blocks[1].dense_ops["dot"]
    small = net.extract(spec).dense_arch.net.blocks[1].dense_ops["dot"]
    # block 1's slots: dense [node 0: 3 | node 1: 16], fields [node 0: 4 | node 1: 8 + 1]; the subnet
    # reads node 1 (16 wide) and the fields of node 0 (4) and node 1 (4 of its 9-field slot)
    assert big.field_proj.shape == (6, 4 + 9) and big.weight.shape == (16, 19 + 6 * 7 // 2)
    assert small.field_proj.shape == (4, 4 + 4) and small.weight.shape == (8, 16 + 4 * 5 // 2)
    assert torch.equal(small.proj, big.proj[:, 3:19])
    assert torch.equal(small.field_proj, torch.cat([big.field_proj[:4, :4], big.field_proj[:4, 4:8]], 1))
    assert torch.equal(small.field_proj_bias, big.field_proj_bias[:4])
    assert torch.equal(small.norm_weight, big.norm_weight[:8]) and torch.equal(small.norm_bias, big.norm_bias[:8])
    assert torch.equal(small.proj_norm_weight, big.proj_norm_weight)  # e = e_max = 8
    # the subnet's pairs among z's first 5 fields, row-major, inside the 7-field upper triangle
    z_max = 7
    pair = {(a, c): 19 + a * z_max - a * (a + 1) // 2 + (c - a - 1) for a in range(z_max) for c in range(a + 1, z_max)}
    cols = list(range(3, 19)) + [pair[a, c] for a in range(5) for c in range(a + 1, 5)]
    assert torch.equal(small.weight, big.weight[:8, cols])
    # a hand-computed dot over those slices agrees with the supernet's op on the same inputs
    plan = net.plan(spec, torch.device("cpu")).blocks[1]
    x, s = torch.randn(6, 16), torch.randn(6, 8, 8)
    with torch.no_grad():
        q = torch.einsum("kf,bfe->bke", small.field_proj, s) + small.field_proj_bias[None, :, None]
        px = torch.relu(ln(x @ small.proj.T, small.proj_norm_weight, small.proj_norm_bias))
        z = torch.cat([px[:, None], q], 1)
        p = torch.stack([(z[:, a] * z[:, c]).sum(-1) for a in range(5) for c in range(a + 1, 5)], 1)
        h = torch.cat([x, p], 1) @ small.weight.T + small.bias
        want = torch.relu(ln(h, small.norm_weight, small.norm_bias))
        torch.testing.assert_close(big(x, s, plan), want, atol=1e-5, rtol=1e-5)


def test_fc_is_relu_of_layernorm_over_the_subnets_units_with_sliced_ln_parameters():
    """Supernet ``fc`` at d = 8 of 16: ``relu(LN(W x + b))`` normalising over exactly the 8 active units
    with the first 8 LN weights / biases (not the 16-wide LN masked to 8)."""
    fm = small_fm(num_dense=3, num_sparse=4)
    space = SearchSpace.load("tiny")
    net = Supernet(fm, space)
    randomize_norms(net, seed=4)
    b0 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(1,), sparse_in=(1,))
    b2 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(2,), sparse_in=(2,))
    spec = ArchSpec(8, (b0, b1, b2))
    big = net.dense_arch.blocks[0].dense_ops["fc"]
    assert big.norm_weight.shape == (16,) and big.norm_bias.shape == (16,)
    plan = net.plan(spec, torch.device("cpu")).blocks[0]
    x, s = torch.randn(5, 3) * 3 + 1, torch.randn(5, 4, 8)
    with torch.no_grad():
        h = x @ big.weight[:8].T + big.bias[:8]  # (5, 8)
        mu, var = h.mean(1, keepdim=True), h.var(1, unbiased=False, keepdim=True)
        want = torch.relu((h - mu) / torch.sqrt(var + 1e-5) * big.norm_weight[:8] + big.norm_bias[:8])
        got = big(x, s, plan)
        assert got.shape == (5, 8)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # normalising the 16-wide output and keeping 8 units is a different function
        full = F.layer_norm(x @ big.weight.T + big.bias, (16,), big.norm_weight, big.norm_bias)[:, :8]
        assert not torch.allclose(got, torch.relu(full), atol=1e-3)
        # the extracted standalone op holds exactly the sliced LN parameters
        small = net.extract(spec).dense_arch.net.blocks[0].dense_ops["fc"]
        assert torch.equal(small.norm_weight, big.norm_weight[:8]) and torch.equal(small.norm_bias, big.norm_bias[:8])


def test_nasrec_small_supernet_dense_params_are_modest_on_criteo_features():
    """13 dense / 26 sparse features (Criteo): the dot's pair layer is ~d_max wide, not quadratic in fields.

    Every block i has one input slot per earlier node: Dx_i = 13 + 1024 i dense columns and
    Ns_i = 26 + 65 i fields (64 + the interact field). ``fc`` alone is sum_i 1024 Dx_i = 22.1M,
    and ``dot``'s W is as wide plus k_max (k_max + 1) / 2 = 1035 pair columns (k_max = 45), so the
    whole supernet is about two such layers per block (~52M); before the projection the dot's W
    had 1 + Ns_i fields' pairs, 83,962 columns in block 6 alone (~281M in all).
    """
    fm = FeatureMap(
        "criteo",
        dense=tuple(DenseFeature(f"I{i}") for i in range(1, 14)),
        sparse=tuple(SparseFeature(f"C{i}", 10) for i in range(1, 27)),
    )
    space = SearchSpace.load("nasrec_small")
    assert max(space.dense_dims) == 1024 and tuple(space.embedding_dims) == (16,) and max(space.sparse_dims) == 64
    net = Supernet(fm, space, device=torch.device("meta"))
    total = sum(p.numel() for p in net.dense_arch.parameters())
    dot = sum(p.numel() for n, p in net.dense_arch.named_parameters() if ".dense_ops.dot." in n)
    fc = sum(p.numel() for n, p in net.dense_arch.named_parameters() if ".dense_ops.fc." in n)
    print(f"nasrec_small supernet on 13/26 features: {total:,} dense params ({dot:,} in dot, {fc:,} in fc)")
    want_dot = 0
    for i in range(7):
        dx, ns = 13 + 1024 * i, 26 + 65 * i
        blk = net.dense_arch.blocks[i].dense_ops["dot"]
        assert blk.field_proj.shape == (45, ns)
        assert blk.weight.shape == (1024, dx + 1035)
        # P, Q and b_q, W and b, then the LayerNorms after P x (2 x 16) and after W [x, p] (2 x 1024)
        want_dot += 16 * dx + 45 * ns + 45 + 1024 * (dx + 1035) + 1024 + 2 * 16 + 2 * 1024
    assert dot == want_dot
    assert fc == sum(1024 * (13 + 1024 * i) + 1024 + 2 * 1024 for i in range(7))
    # the dot costs about one more fc layer (+ 7 x 1024 x 1035 pair weights), nothing quadratic
    assert dot < fc + 8_000_000
    assert total < 60_000_000


def test_subnet_weights_are_slices_of_the_largest_layer():
    fm = small_fm(num_dense=3)
    space = SearchSpace.load("tiny")
    net = Supernet(fm, space)
    b0 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(0,), sparse_in=(0,))
    b1 = BlockSpec("fc", "efc", dense_dim=8, sparse_dim=4, dense_in=(1,), sparse_in=(0, 1))
    b2 = BlockSpec("fc", "efc", dense_dim=16, sparse_dim=8, dense_in=(0, 2), sparse_in=(2,))
    spec = ArchSpec(8, (b0, b1, b2))
    model = net.extract(spec).dense_arch.net
    big = net.dense_arch.blocks
    # block 1 reads node 1 (slot columns 3..3+16 of which the first 8 are used), outputs 8 of 16 units
    assert torch.equal(model.blocks[1].dense_ops["fc"].weight, big[1].dense_ops["fc"].weight[:8, 3:11])
    # block 2 reads nodes 0 (cols 0..3) and 2 (slot 3+16+16 wide... cols 3+16 .. 3+16+8)
    w = big[2].dense_ops["fc"].weight
    assert torch.equal(model.blocks[2].dense_ops["fc"].weight, torch.cat([w[:, :3], w[:, 19:27]], 1))
    # efc of block 1: 4 output fields of 8; fields of node 0 (4) and node 1 (4 of its 8+1 slot)
    we = big[1].sparse_ops["efc"].weight
    assert torch.equal(model.blocks[1].sparse_ops["efc"].weight, torch.cat([we[:4, :4], we[:4, 4:8]], 1))


def test_supernet_without_dense_features_and_smaller_embedding_dim():
    fm = small_fm(num_dense=0)
    space = tiny_two_dims()
    net = Supernet(fm, space)
    rng = np.random.default_rng(0)
    batch = random_batch(fm, 8)
    for _ in range(10):
        spec = ArchSpec.from_dict({**space.sample(rng).to_dict(), "embedding_dim": 4})
        want = net(batch.dense_features, batch.sparse_features, spec)
        torch.testing.assert_close(net.extract(spec)(batch.dense_features, batch.sparse_features), want)
    want.sum().backward()


def test_specs_outside_the_supernet_are_rejected_naming_the_choice():
    fm = small_fm()
    tiny = Supernet(fm, SearchSpace.load("tiny"))
    batch = random_batch(fm, 4)
    ok = tiny_spec("fc", "efc")
    too_wide = ArchSpec.from_dict({**ok.to_dict(), "embedding_dim": 16})
    with pytest.raises(SpecError, match="embedding_dim: 16 is larger"):
        tiny(batch.dense_features, batch.sparse_features, too_wide)
    big_dense = ArchSpec(8, (BlockSpec("fc", "efc", 64, 4, (0,), (0,)),) + ok.blocks[1:])
    with pytest.raises(SpecError, match=r"blocks\[0\]\.dense_dim: 64"):
        tiny.extract(big_dense)
    small = Supernet(fm, SearchSpace.from_dict({**SearchSpace.load("tiny").to_dict(), "sparse_ops": ["efc"]}))
    with pytest.raises(SpecError, match=r"blocks\[1\]\.sparse_op: 'attention' is not in this supernet"):
        small.extract_dense(tiny_spec("fc", "attention"))
    two_blocks = ArchSpec(8, ok.blocks[:2])
    with pytest.raises(SpecError, match="blocks"):
        tiny(batch.dense_features, batch.sparse_features, two_blocks)


def test_plans_are_cached_per_spec_and_fresh_dense_is_seeded():
    fm = small_fm()
    space = SearchSpace.load("tiny")
    net = Supernet(fm, space)
    spec = tiny_spec("dot", "attention")
    cpu = torch.device("cpu")
    assert net.plan(spec, cpu) is net.plan(spec, cpu)
    a, b, c = net.fresh_dense(spec, seed=1), net.fresh_dense(spec, seed=1), net.fresh_dense(spec, seed=2)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), n
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    emb = torch.randn(5, 4, 8)
    assert a(torch.randn(5, 3), emb).shape == (5,)
