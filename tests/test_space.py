"""SearchSpace and ArchSpec: loading, validation, sampling, mutation; the featurizers of recnas.space.features."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from recnas.space import DENSE_OPS, SPARSE_OPS, ArchSpec, BlockSpec, SearchSpace, SpecError, available_spaces, features

SHIPPED = ["tiny", "nasrec_small", "nasrec_full", "ctr_extended"]
BLOCK_FIELDS = ("dense_op", "sparse_op", "dense_dim", "sparse_dim", "dense_in", "sparse_in",
                "dense_sparse_interact", "deep_fm")


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.load("tiny")


def _write(tmp_path: Path, d: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(d))
    return p


def _changed_choices(a: ArchSpec, b: ArchSpec) -> list[str]:
    out = ["embedding_dim"] if a.embedding_dim != b.embedding_dim else []
    for i, (x, y) in enumerate(zip(a.blocks, b.blocks)):
        out += [f"blocks[{i}].{f}" for f in BLOCK_FIELDS if getattr(x, f) != getattr(y, f)]
    return out


# ---------------------------------------------------------------- space files


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_space_loads_and_round_trips(name: str, tmp_path: Path) -> None:
    space = SearchSpace.load(name)
    assert space.name == name
    assert SearchSpace.from_dict(space.to_dict()) == space
    p = _write(tmp_path, space.to_dict())
    assert SearchSpace.load(p) == space
    assert SearchSpace.load(str(p)) == space
    assert name in available_spaces()


def test_nasrec_spaces_match_the_paper() -> None:
    small, full, ext = (SearchSpace.load(n) for n in ("nasrec_small", "nasrec_full", "ctr_extended"))
    for s in (small, full, ext):
        assert s.num_blocks == 7 and s.max_connections == 4
        assert s.dense_dims == (16, 32, 64, 128, 256, 512, 768, 1024)
        assert s.sparse_dims == (16, 32, 48, 64)
        assert s.dense_sparse_interact == (False, True) and s.deep_fm == (False, True)
    assert small.dense_ops == ("fc", "dot") and small.sparse_ops == ("efc",) and small.embedding_dims == (16,)
    assert full.dense_ops == ("fc", "dot", "gating", "sum") and full.sparse_ops == ("efc", "attention")
    assert ext.dense_ops == DENSE_OPS and ext.sparse_ops == SPARSE_OPS and ext.embedding_dims == (8, 16, 32)


def test_tiny_space_has_every_op_and_switch(tiny: SearchSpace) -> None:
    assert tiny.dense_ops == DENSE_OPS and tiny.sparse_ops == SPARSE_OPS
    assert tiny.dense_sparse_interact == (False, True) and tiny.deep_fm == (False, True)
    assert tiny.num_blocks <= 3


def test_file_order_does_not_matter(tiny: SearchSpace) -> None:
    d = tiny.to_dict()
    d["dense_ops"] = list(reversed(d["dense_ops"]))
    d["dense_dims"] = list(reversed(d["dense_dims"]))
    d["deep_fm"] = [True, False]
    assert SearchSpace.from_dict(d) == tiny


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"dense_opps": ["fc"]}, "unknown keys ['dense_opps']"),
        ({"dense_ops": ["fc", "mlp"]}, "dense_ops: unknown op 'mlp'"),
        ({"sparse_ops": ["efc", "cross"]}, "sparse_ops: unknown op 'cross'"),
        ({"dense_dims": [16, 0]}, "dense_dims: bad dimension 0"),
        ({"sparse_dims": [4, "big"]}, "sparse_dims: bad dimension 'big'"),
        ({"embedding_dims": [8.5]}, "embedding_dims: bad dimension 8.5"),
        ({"dense_dims": [16, 16]}, "dense_dims: duplicate values [16]"),
        ({"dense_dims": []}, "dense_dims: expected a non-empty list"),
        ({"max_connections": 0}, "max_connections: expected a positive integer, got 0"),
        ({"num_blocks": "seven"}, "num_blocks: expected a positive integer"),
        ({"deep_fm": ["yes please"]}, "deep_fm: expected a non-empty list of true/false"),
    ],
)
def test_bad_space_file_is_rejected_naming_key_and_file(
    tiny: SearchSpace, tmp_path: Path, change: dict, expected: str
) -> None:
    p = _write(tmp_path, {**tiny.to_dict(), **change}, "bad_space.yaml")
    with pytest.raises(SpecError) as e:
        SearchSpace.load(p)
    assert expected in str(e.value)
    assert "bad_space.yaml" in str(e.value)


def test_missing_key_and_default_name(tiny: SearchSpace, tmp_path: Path) -> None:
    d = tiny.to_dict()
    del d["sparse_dims"]
    with pytest.raises(SpecError, match=r"missing keys \['sparse_dims'\]"):
        SearchSpace.load(_write(tmp_path, d))
    d = tiny.to_dict()
    del d["name"], d["description"]
    assert SearchSpace.load(_write(tmp_path, d, "my_space.yaml")).name == "my_space"


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nnum_blocks: 2\ndense_ops: [fc, dot\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: line \d+: not valid YAML"):
        SearchSpace.load(p)


def test_unknown_space_name_lists_available() -> None:
    with pytest.raises(SpecError) as e:
        SearchSpace.load("nasrec_huge")
    assert "nasrec_huge" in str(e.value) and "nasrec_small" in str(e.value) and "tiny" in str(e.value)


# ---------------------------------------------------------------- specs


def test_spec_json_round_trip_and_key_ignores_dict_order(tiny: SearchSpace) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = tiny.sample(rng)
        assert ArchSpec.from_json(arch.to_json()) == arch
        assert ArchSpec.from_json(arch.to_json(indent=2)).key() == arch.key()
        d = arch.to_dict()
        shuffled = {k: d[k] for k in reversed(list(d))}
        shuffled["blocks"] = [{k: b[k] for k in reversed(list(b))} for b in d["blocks"]]
        for b in shuffled["blocks"]:
            b["dense_in"] = list(reversed(b["dense_in"]))
        assert ArchSpec.from_dict(shuffled).key() == arch.key()
        assert replace(arch, space="other").key() == arch.key()


def test_key_is_stable_across_processes(tiny: SearchSpace) -> None:
    archs = [tiny.sample(np.random.default_rng(s)) for s in range(5)]
    assert len({a.key() for a in archs}) == 5
    code = (
        "import sys\nfrom recnas.space import ArchSpec\n"
        "for line in sys.stdin: print(ArchSpec.from_json(line).key())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input="\n".join(a.to_json() for a in archs),
                         capture_output=True, text=True, check=True, env=env, timeout=60)
    assert out.stdout.split() == [a.key() for a in archs]


def test_spec_rejects_malformed_blocks() -> None:
    ok = dict(dense_op="fc", sparse_op="efc", dense_dim=8, sparse_dim=4, dense_in=[0], sparse_in=[0])
    with pytest.raises(SpecError, match=r"dense_in: node indices must be distinct"):
        BlockSpec.from_dict({**ok, "dense_in": [0, 0]})
    with pytest.raises(SpecError, match=r"blocks\[1\]: unknown keys \['width'\]"):
        ArchSpec.from_dict({"embedding_dim": 8, "blocks": [ok, {**ok, "width": 3}]})
    with pytest.raises(SpecError, match=r"blocks\[0\].sparse_in: nodes \[1\] are not earlier nodes"):
        ArchSpec.from_dict({"embedding_dim": 8, "blocks": [{**ok, "sparse_in": [0, 1]}]})
    with pytest.raises(SpecError, match="not valid JSON"):
        ArchSpec.from_json("{blocks: ")


def _tiny_spec(**block1: object) -> ArchSpec:
    base = dict(dense_op="fc", sparse_op="efc", dense_dim=8, sparse_dim=4)
    blocks = [BlockSpec(**base, dense_in=(0,), sparse_in=(0,)),
              BlockSpec(**{**base, "dense_in": (0, 1), "sparse_in": (1,), **block1}),
              BlockSpec(**base, dense_in=(2,), sparse_in=(1, 2))]
    return ArchSpec(embedding_dim=8, blocks=tuple(blocks), space="tiny")


@pytest.mark.parametrize(
    "arch_kwargs, expected",
    [
        ({"dense_dim": 100}, "blocks[1].dense_dim: 100 not in [8, 16]"),
        ({"sparse_dim": 5}, "blocks[1].sparse_dim: 5 not in [4, 8]"),
        ({"dense_op": "mlp"}, "blocks[1].dense_op: 'mlp' not in ['fc', 'dot', 'gating', 'sum', 'cross']"),
        ({"sparse_op": "cin"}, "blocks[1].sparse_op: 'cin' not in ['efc', 'attention']"),
    ],
)
def test_validate_names_the_offending_choice(tiny: SearchSpace, arch_kwargs: dict, expected: str) -> None:
    assert tiny.contains(_tiny_spec())
    bad = _tiny_spec(**arch_kwargs)
    assert not tiny.contains(bad)
    with pytest.raises(SpecError) as e:
        tiny.validate(bad)
    assert expected in str(e.value)


def test_validate_connection_count_block_count_and_embedding(tiny: SearchSpace) -> None:
    with pytest.raises(SpecError, match=r"blocks\[1\].dense_in: \[0, 1\] connects 2 nodes.*allows 1..1"):
        SearchSpace.from_dict({**tiny.to_dict(), "max_connections": 1}).validate(_tiny_spec())
    good = _tiny_spec()
    three = replace(good, blocks=good.blocks[:2] + (replace(good.blocks[2], dense_in=(0, 1, 2)),))
    with pytest.raises(SpecError, match=r"blocks\[2\].dense_in: \[0, 1, 2\] connects 3 nodes"):
        tiny.validate(three)
    with pytest.raises(SpecError, match="blocks: 2 blocks, space 'tiny' has 3"):
        tiny.validate(replace(good, blocks=good.blocks[:2]))
    with pytest.raises(SpecError, match=r"embedding_dim: 16 not in \[8\]"):
        tiny.validate(replace(good, embedding_dim=16))


# ---------------------------------------------------------------- sample / mutate / largest / size


def test_sample_is_valid_and_covers_every_choice(tiny: SearchSpace) -> None:
    rng = np.random.default_rng(1)
    archs = [tiny.sample(rng) for _ in range(400)]
    assert all(tiny.contains(a) and a.space == "tiny" for a in archs)
    seen = {f: set() for f in BLOCK_FIELDS}
    for a in archs:
        for b in a.blocks:
            for f in BLOCK_FIELDS:
                seen[f].add(getattr(b, f))
    assert seen["dense_op"] == set(tiny.dense_ops) and seen["sparse_op"] == set(tiny.sparse_ops)
    assert seen["dense_dim"] == set(tiny.dense_dims) and seen["sparse_dim"] == set(tiny.sparse_dims)
    assert seen["deep_fm"] == {False, True} and seen["dense_sparse_interact"] == {False, True}
    assert {len(x) for x in seen["dense_in"]} == {1, 2}
    last = {a.blocks[-1].sparse_in for a in archs}  # every 1- and 2-subset of nodes 0..2
    assert last == {(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)}
    # the same seed gives the same draws
    rng2 = np.random.default_rng(1)
    assert [tiny.sample(rng2) for _ in range(5)] == archs[:5]


def test_size_counts_the_architectures_exactly() -> None:
    small = SearchSpace(name="micro", num_blocks=2, embedding_dims=(8, 16), dense_ops=("fc", "dot"),
                        sparse_ops=("efc",), dense_dims=(8,), sparse_dims=(4,), max_connections=2,
                        dense_sparse_interact=(False,), deep_fm=(False, True))
    rng = np.random.default_rng(0)
    keys = {small.sample(rng).key() for _ in range(6000)}
    assert small.size() == 2 * (2 * 2) * (2 * 2 * 3 * 3) == len(keys)
    assert SearchSpace.load("nasrec_full").size() > SearchSpace.load("nasrec_small").size() > 1e20


@pytest.mark.parametrize("name", ["tiny", "nasrec_full", "ctr_extended"])
def test_mutate_changes_exactly_one_choice(name: str) -> None:
    space = SearchSpace.load(name)
    rng = np.random.default_rng(2)
    changed_kinds = set()
    for _ in range(300):
        a = space.sample(rng)
        m = space.mutate(a, rng)
        assert space.contains(m) and m != a and m.key() != a.key() and m.space == name
        diff = _changed_choices(a, m)
        assert len(diff) == 1, diff
        changed_kinds.add(diff[0].split(".")[-1])
    assert changed_kinds >= set(BLOCK_FIELDS)
    if name == "ctr_extended":
        assert "embedding_dim" in changed_kinds


def test_mutate_rejects_outside_spec_and_single_architecture_space(tiny: SearchSpace) -> None:
    with pytest.raises(SpecError, match=r"blocks\[1\].dense_dim"):
        tiny.mutate(_tiny_spec(dense_dim=100), np.random.default_rng(0))
    one = SearchSpace(name="one", num_blocks=1, embedding_dims=(8,), dense_ops=("fc",), sparse_ops=("efc",),
                      dense_dims=(8,), sparse_dims=(4,), max_connections=3,
                      dense_sparse_interact=(False,), deep_fm=(True,))
    assert one.size() == 1
    with pytest.raises(SpecError, match="single architecture"):
        one.mutate(one.sample(np.random.default_rng(0)), np.random.default_rng(0))


@pytest.mark.parametrize("name", SHIPPED)
def test_largest_is_the_full_path(name: str) -> None:
    space = SearchSpace.load(name)
    rng = np.random.default_rng(3)
    arch = space.largest(rng)
    assert space.contains(arch) and arch.space == name
    assert arch.embedding_dim == max(space.embedding_dims)
    for i, b in enumerate(arch.blocks):
        assert b.dense_dim == max(space.dense_dims) and b.sparse_dim == max(space.sparse_dims)
        k = min(space.max_connections, i + 1)
        assert b.dense_in == b.sparse_in == tuple(range(i + 1 - k, i + 1))
        assert b.deep_fm and b.dense_sparse_interact
    ops = {b.dense_op for _ in range(30) for b in space.largest(rng).blocks}
    assert ops == set(space.dense_ops)  # ops are sampled, not fixed


# ---------------------------------------------------------------- featurizers (recnas.space.features)


@pytest.mark.parametrize("name", ["tiny", "nasrec_full", "ctr_extended"])
def test_encode_graph_tokens_fixed_shape_and_injective(name: str) -> None:
    space = SearchSpace.load(name)
    rng = np.random.default_rng(4)
    archs = {}
    for _ in range(300):
        a = space.sample(rng)
        archs[a.key()] = a
    archs = list(archs.values())
    # near neighbours too: single mutations are the hardest pairs to tell apart
    archs += [space.mutate(a, rng) for a in archs[:100]]
    encs, graphs, toks = set(), set(), set()
    D, V, F = features.encoding_size(space), features.graph_num_nodes(space), features.graph_feature_size(space)
    n_types = len(features.graph_node_types(space))
    L, n_vocab = features.token_length(space), features.vocab_size(space)
    for a in archs:
        e = features.encode(space, a)
        assert e.shape == (D,) and e.dtype == np.float32 and set(np.unique(e)) <= {0.0, 1.0}
        A, X = features.graph(space, a)
        assert A.shape == (V, V) and X.shape == (V, F) and A.dtype == X.dtype == np.float32
        assert (A[-1, :-1] == 1).all() and (A[:-1, -1] == 1).all() and np.trace(A) == 0  # global node
        assert (X[:, :n_types].sum(axis=1) == 1).all()  # one node type each
        t = features.tokenize(space, a)
        assert len(t) == L and all(0 <= x < n_vocab for x in t)
        encs.add(e.tobytes())
        graphs.add(A.tobytes() + X.tobytes())
        toks.add(tuple(t))
    n = len({a.key() for a in archs})
    assert len(encs) == len(graphs) == len(toks) == n
    # the batch featurizers stack the per-spec views
    assert (features.onehot(space, archs[:5]) == np.stack([features.encode(space, a) for a in archs[:5]])).all()
    assert (features.tokens(space, archs[:5]) == np.array([features.tokenize(space, a) for a in archs[:5]])).all()
    As, Xs = features.graphs(space, archs[:5])
    assert all((As[i] == features.graph(space, a)[0]).all() and (Xs[i] == features.graph(space, a)[1]).all()
               for i, a in enumerate(archs[:5]))


def test_encode_layout(tiny: SearchSpace) -> None:
    arch = _tiny_spec(dense_op="dot", deep_fm=True)
    e = features.encode(tiny, arch)
    # embedding_dim one-hot, then per block 5 dense ops, 2 sparse ops, 2 + 2 dims, 3 + 3 nodes, 2 + 2 switches
    per_block = 5 + 2 + 2 + 2 + 3 + 3 + 2 + 2
    assert e.shape == (1 + 3 * per_block,)
    b1 = e[1 + per_block: 1 + 2 * per_block]
    assert b1[:5].tolist() == [0, 1, 0, 0, 0]  # dense_op dot
    assert b1[11:14].tolist() == [1, 1, 0] and b1[14:17].tolist() == [0, 1, 0]  # dense_in (0, 1), sparse_in (1,)
    assert b1[-2:].tolist() == [0, 1]  # deep_fm true
    assert e.sum() == 1 + 3 * 6 + sum(len(b.dense_in) + len(b.sparse_in) for b in arch.blocks)


def test_graph_edges_follow_the_connections(tiny: SearchSpace) -> None:
    arch = _tiny_spec(dense_op="dot", deep_fm=True)
    A, X = features.graph(tiny, arch)
    types = features.graph_node_types(tiny)
    d1, s1 = 2 + 2 * 1, 3 + 2 * 1  # block 1's dense and sparse op nodes
    assert X[d1, types.index("dense:dot")] == 1 and X[s1, types.index("sparse:efc")] == 1
    # dense_in (0, 1): input_dense and block 0's dense node; dot also reads sparse_in (1,) = block 0's sparse node
    assert set(np.flatnonzero(A[:-1, d1])) == {0, 2, 3, s1}  # s1 -> d1 is the deep_fm edge
    assert set(np.flatnonzero(A[:-1, s1])) == {3}
    out = features.graph_num_nodes(tiny) - 2
    assert set(np.flatnonzero(A[:-1, out])) == {2 + 2 * 2, 3 + 2 * 2}
    # fc reads no sparse source; dense_sparse_interact adds dense op -> sparse op of the same block
    A2, X2 = features.graph(tiny, _tiny_spec(dense_op="fc", dense_sparse_interact=True))
    assert set(np.flatnonzero(A2[:-1, d1])) == {0, 2}
    assert set(np.flatnonzero(A2[:-1, s1])) == {3, d1}
    assert X2[s1, -1] == 1 and X2[d1, -2] == 0  # flags: dense_sparse_interact on the sparse node, deep_fm off


def test_tokens_vocab(tiny: SearchSpace) -> None:
    vocab = features.vocab(tiny)
    assert sorted(vocab.values()) == list(range(1, features.vocab_size(tiny)))  # 0 is kept for padding
    assert {k for k, _ in vocab} == set(BLOCK_FIELDS) | {"embedding_dim"}
    arch = _tiny_spec(dense_op="dot")
    t = features.tokenize(tiny, arch)
    assert t[0] == vocab[("embedding_dim", 8)]
    per_block = 6 + 2 * tiny.max_connections
    b1 = t[1 + per_block: 1 + 2 * per_block]
    assert b1[:4] == [vocab[("dense_op", "dot")], vocab[("sparse_op", "efc")], vocab[("dense_dim", 8)],
                      vocab[("sparse_dim", 4)]]
    assert b1[4:8] == [vocab[("dense_in", 0)], vocab[("dense_in", 1)], vocab[("sparse_in", 1)], 0]
    assert b1[8:] == [vocab[("dense_sparse_interact", False)], vocab[("deep_fm", False)]]


def test_views_reject_specs_outside_the_space(tiny: SearchSpace) -> None:
    bad = _tiny_spec(dense_dim=100)
    for view in (features.encode, features.graph, features.tokenize):
        with pytest.raises(SpecError, match=r"blocks\[1\].dense_dim"):
            view(tiny, bad)
    for kind in features.FEATURIZERS:
        with pytest.raises(SpecError, match=r"blocks\[1\].dense_dim"):
            features.featurize(kind, tiny, [_tiny_spec(), bad])


def test_search_space_holds_no_encoding_code() -> None:
    gone = ("encode", "encoding_size", "graph", "graph_node_types", "graph_num_nodes", "graph_feature_size",
            "tokens", "_vocab", "vocab_size", "token_length")
    assert [n for n in gone if hasattr(SearchSpace, n)] == []
