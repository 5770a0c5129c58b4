"""Featurizers: architectures as arrays for predictors (one-hot vector, graph, token sequence).

Three views of an :class:`~recnas.space.spec.ArchSpec` of a :class:`~recnas.space.SearchSpace`,
each with a fixed size per space, so architectures of one space stack into one array:

=============  ==========================  ======================================  ===================
kind           one spec                    a list of specs                         used by
=============  ==========================  ======================================  ===================
``onehot``     :func:`encode` ``(D,)``     :func:`onehot` ``(n, D)`` float32       WeakNAS, trees, MLP
``graph``      :func:`graph` ``(V,V),      :func:`graphs` ``(n,V,V), (n,V,F)``     BONAS (GCN)
               (V,F)``                     float32
``tokens``     :func:`tokenize` ``[L]``    :func:`tokens` ``(n, L)`` int64         EmProx (sequences)
=============  ==========================  ======================================  ===================

``D = encoding_size(space)``, ``V = graph_num_nodes(space)``, ``F = graph_feature_size(space)``,
``L = token_length(space)``. Every view validates the spec first (a spec outside the space is a
:class:`~recnas.space.spec.SpecError` naming the offending choice), and distinct specs of a space
get distinct features in each view. :func:`featurize` picks a view by its kind's name.

Example::

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    >>> onehot(space, specs).shape == (3, encoding_size(space))
    True
    >>> featurize("tokens", space, specs).shape == (3, token_length(space))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from recnas.space.space import READS_SPARSE

if TYPE_CHECKING:
    from recnas.space.space import SearchSpace
    from recnas.space.spec import ArchSpec

__all__ = [
    "encoding_size",
    "encode",
    "onehot",
    "graph_node_types",
    "graph_num_nodes",
    "graph_feature_size",
    "graph",
    "graphs",
    "vocab",
    "vocab_size",
    "token_length",
    "tokenize",
    "tokens",
    "FEATURIZERS",
    "featurize",
]



def _one_hot(values: tuple[Any, ...], v: Any) -> np.ndarray:
    """float32 indicator of ``v``'s position in ``values``.

    >>> _one_hot((8, 16, 32), 16)
    array([0., 1., 0.], dtype=float32)
    """
    out = np.zeros(len(values), dtype=np.float32)
    out[values.index(v)] = 1.0
    return out


def _multi_hot(n: int, nodes: tuple[int, ...]) -> np.ndarray:
    """float32 indicator of the set ``nodes`` among ``0..n-1``.

    >>> _multi_hot(4, (0, 2))
    array([1., 0., 1., 0.], dtype=float32)
    """
    out = np.zeros(n, dtype=np.float32)
    out[list(nodes)] = 1.0
    return out


# ---------------------------------------------------------------------- one-hot vector (WeakNAS)


def encoding_size(space: SearchSpace) -> int:
    """Length ``D`` of :func:`encode`'s vector.

    >>> from recnas.space import SearchSpace
    >>> encoding_size(SearchSpace.load("tiny"))
    64
    """
    per_block = (
        len(space.dense_ops)
        + len(space.sparse_ops)
        + len(space.dense_dims)
        + len(space.sparse_dims)
        + 2 * space.num_blocks
        + len(space.dense_sparse_interact)
        + len(space.deep_fm)
    )
    return len(space.embedding_dims) + space.num_blocks * per_block


def encode(space: SearchSpace, spec: ArchSpec) -> np.ndarray:
    """Fixed-length float32 vector of the choices (the WeakNAS encoding), ``(encoding_size(space),)``.

    Layout: one-hot ``embedding_dim``; then per block: one-hot ``dense_op``, ``sparse_op``,
    ``dense_dim``, ``sparse_dim``, multi-hot ``dense_in`` and ``sparse_in`` over nodes
    ``0..num_blocks-1``, one-hot ``dense_sparse_interact`` and ``deep_fm``. Distinct specs of the
    space get distinct vectors.

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> e = encode(space, space.sample(np.random.default_rng(0)))
    >>> e.shape, e.dtype, set(e.tolist()) == {0.0, 1.0}
    ((64,), dtype('float32'), True)
    """
    space.validate(spec)
    parts: list[np.ndarray] = [_one_hot(space.embedding_dims, spec.embedding_dim)]
    for b in spec.blocks:
        parts += [
            _one_hot(space.dense_ops, b.dense_op),
            _one_hot(space.sparse_ops, b.sparse_op),
            _one_hot(space.dense_dims, b.dense_dim),
            _one_hot(space.sparse_dims, b.sparse_dim),
            _multi_hot(space.num_blocks, b.dense_in),
            _multi_hot(space.num_blocks, b.sparse_in),
            _one_hot(space.dense_sparse_interact, b.dense_sparse_interact),
            _one_hot(space.deep_fm, b.deep_fm),
        ]
    return np.concatenate(parts).astype(np.float32)


def onehot(space: SearchSpace, specs: Sequence[ArchSpec]) -> np.ndarray:
    """``(n, encoding_size(space))`` float32: :func:`encode` of each spec (``(0, D)`` for none).

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> onehot(space, [space.sample(np.random.default_rng(i)) for i in range(5)]).shape
    (5, 64)
    >>> onehot(space, []).shape
    (0, 64)
    """
    if not specs:
        return np.zeros((0, encoding_size(space)), np.float32)
    return np.stack([encode(space, s) for s in specs])


# ---------------------------------------------------------------------- graph (BONAS)


def graph_node_types(space: SearchSpace) -> tuple[str, ...]:
    """Node-type names, the first columns of :func:`graph`'s features.

    >>> from recnas.space import SearchSpace
    >>> graph_node_types(SearchSpace.load("nasrec_small"))
    ('input_dense', 'input_sparse', 'dense:fc', 'dense:dot', 'sparse:efc', 'output', 'global')
    """
    return (
        ("input_dense", "input_sparse")
        + tuple(f"dense:{op}" for op in space.dense_ops)
        + tuple(f"sparse:{op}" for op in space.sparse_ops)
        + ("output", "global")
    )


def graph_num_nodes(space: SearchSpace) -> int:
    """``V`` of :func:`graph`: 2 inputs + 2 per block + output + global.

    >>> from recnas.space import SearchSpace
    >>> graph_num_nodes(SearchSpace.load("tiny"))  # 3 blocks
    10
    """
    return 2 * space.num_blocks + 4


def graph_feature_size(space: SearchSpace) -> int:
    """``F`` of :func:`graph`: node types, ``embedding_dims``, ``dense_dims``, ``sparse_dims``, 2 flags.

    >>> from recnas.space import SearchSpace
    >>> graph_feature_size(SearchSpace.load("tiny"))
    18
    """
    return (
        len(graph_node_types(space))
        + len(space.embedding_dims)
        + len(space.dense_dims)
        + len(space.sparse_dims)
        + 2
    )


def graph(space: SearchSpace, spec: ArchSpec) -> tuple[np.ndarray, np.ndarray]:
    """Graph view for graph surrogates (BONAS): ``(adjacency (V, V), features (V, F))``, float32.

    Nodes: 0 ``input_dense``, 1 ``input_sparse``; for block ``i`` node ``2 + 2i`` (its dense op) and
    ``3 + 2i`` (its sparse op); then ``output`` and ``global``. ``A[u, v] = 1`` iff ``u``'s output
    feeds ``v``: the dense op reads the dense sources of ``dense_in`` and, for the ops that read the
    sparse input (``dot``, ``gating``, ``sum``), the sparse sources of ``sparse_in``; the sparse op
    reads the sparse sources of ``sparse_in``; ``deep_fm`` adds sparse op -> dense op and
    ``dense_sparse_interact`` dense op -> sparse op of the same block; the last block feeds
    ``output``. The global node is joined to every node in both directions. No self-loops.

    Features: one-hot node type (:func:`graph_node_types`), then one-hot ``embedding_dim`` (on the
    input nodes), one-hot ``dense_dim`` (dense op nodes), one-hot ``sparse_dim`` (sparse op nodes),
    and two flags: ``deep_fm`` (dense op node), ``dense_sparse_interact`` (sparse op node). ``V``
    and ``F`` are fixed for the space.

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> A, X = graph(space, space.sample(np.random.default_rng(0)))
    >>> A.shape, X.shape, float(np.trace(A))
    ((10, 10), (10, 18), 0.0)
    """
    space.validate(spec)
    V, F = graph_num_nodes(space), graph_feature_size(space)
    A = np.zeros((V, V), dtype=np.float32)
    X = np.zeros((V, F), dtype=np.float32)
    types = graph_node_types(space)
    n_t, n_e, n_d = len(types), len(space.embedding_dims), len(space.dense_dims)
    emb_off, dd_off, sd_off = n_t, n_t + n_e, n_t + n_e + n_d
    flag_fm, flag_inter = F - 2, F - 1
    out_node, glob = V - 2, V - 1

    def dense_src(j: int) -> int:
        return 0 if j == 0 else 2 + 2 * (j - 1)

    def sparse_src(j: int) -> int:
        return 1 if j == 0 else 3 + 2 * (j - 1)

    for node, t in ((0, "input_dense"), (1, "input_sparse"), (out_node, "output"), (glob, "global")):
        X[node, types.index(t)] = 1.0
    for node in (0, 1):
        X[node, emb_off + space.embedding_dims.index(spec.embedding_dim)] = 1.0
    for i, b in enumerate(spec.blocks):
        dn, sn = 2 + 2 * i, 3 + 2 * i
        X[dn, types.index(f"dense:{b.dense_op}")] = 1.0
        X[sn, types.index(f"sparse:{b.sparse_op}")] = 1.0
        X[dn, dd_off + space.dense_dims.index(b.dense_dim)] = 1.0
        X[sn, sd_off + space.sparse_dims.index(b.sparse_dim)] = 1.0
        X[dn, flag_fm] = float(b.deep_fm)
        X[sn, flag_inter] = float(b.dense_sparse_interact)
        for j in b.dense_in:
            A[dense_src(j), dn] = 1.0
        for j in b.sparse_in:
            A[sparse_src(j), sn] = 1.0
            if b.dense_op in READS_SPARSE:
                A[sparse_src(j), dn] = 1.0
        if b.deep_fm:
            A[sn, dn] = 1.0
        if b.dense_sparse_interact:
            A[dn, sn] = 1.0
    last = space.num_blocks - 1
    A[2 + 2 * last, out_node] = A[3 + 2 * last, out_node] = 1.0
    A[glob, :] = 1.0
    A[:, glob] = 1.0
    A[glob, glob] = 0.0
    return A, X


def graphs(space: SearchSpace, specs: Sequence[ArchSpec]) -> tuple[np.ndarray, np.ndarray]:
    """``(adjacency (n, V, V), node features (n, V, F))`` float32: :func:`graph` of each spec.

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> A, X = graphs(space, [space.sample(np.random.default_rng(i)) for i in range(4)])
    >>> A.shape, X.shape
    ((4, 10, 10), (4, 10, 18))
    >>> [a.shape for a in graphs(space, [])]
    [(0, 10, 10), (0, 10, 18)]
    """
    pairs = [graph(space, s) for s in specs]
    if not pairs:
        V, F = graph_num_nodes(space), graph_feature_size(space)
        return np.zeros((0, V, V), np.float32), np.zeros((0, V, F), np.float32)
    return np.stack([a for a, _ in pairs]), np.stack([x for _, x in pairs])


# ---------------------------------------------------------------------- token sequence (EmProx)


@lru_cache(maxsize=64)
def vocab(space: SearchSpace) -> dict[tuple[str, Any], int]:
    """Token ids of :func:`tokenize`: 0 is padding; then one id per (choice kind, value).

    The returned mapping is shared (cached per space): do not modify it.

    >>> from recnas.space import SearchSpace
    >>> v = vocab(SearchSpace.load("tiny"))
    >>> v[("embedding_dim", 8)], min(v.values()), max(v.values()) + 1 == vocab_size(SearchSpace.load("tiny"))
    (1, 1, True)
    """
    kinds: list[tuple[str, tuple[Any, ...]]] = [
        ("embedding_dim", space.embedding_dims),
        ("dense_op", space.dense_ops),
        ("sparse_op", space.sparse_ops),
        ("dense_dim", space.dense_dims),
        ("sparse_dim", space.sparse_dims),
        ("dense_in", tuple(range(space.num_blocks))),
        ("sparse_in", tuple(range(space.num_blocks))),
        ("dense_sparse_interact", space.dense_sparse_interact),
        ("deep_fm", space.deep_fm),
    ]
    ids: dict[tuple[str, Any], int] = {}
    for kind, values in kinds:
        for v in values:
            ids[(kind, v)] = len(ids) + 1
    return ids


def vocab_size(space: SearchSpace) -> int:
    """Number of distinct token ids of :func:`tokenize`, padding (id 0) included.

    >>> from recnas.space import SearchSpace
    >>> vocab_size(SearchSpace.load("tiny"))
    23
    """
    return len(vocab(space)) + 1


def token_length(space: SearchSpace) -> int:
    """Length ``L`` of :func:`tokenize`'s sequence: ``1 + num_blocks * (6 + 2 * max_connections)``.

    >>> from recnas.space import SearchSpace
    >>> token_length(SearchSpace.load("tiny"))
    31
    """
    return 1 + space.num_blocks * (6 + 2 * space.max_connections)


def tokenize(space: SearchSpace, spec: ArchSpec) -> list[int]:
    """Fixed-length token sequence of the choices (for sequence encoders such as EmProx's).

    ``[embedding_dim]`` then, per block, ``dense_op, sparse_op, dense_dim, sparse_dim``, the nodes
    of ``dense_in`` then of ``sparse_in`` (each sorted and right-padded with 0 to
    ``max_connections``), ``dense_sparse_interact, deep_fm``. Every (choice kind, value) has its own
    id in ``1..vocab_size(space)-1`` (:func:`vocab`); 0 is padding. Length :func:`token_length`.

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> t = tokenize(space, space.sample(np.random.default_rng(0)))
    >>> len(t) == token_length(space), all(0 <= x < vocab_size(space) for x in t)
    (True, True)
    """
    space.validate(spec)
    ids = vocab(space)
    out = [ids[("embedding_dim", spec.embedding_dim)]]
    for b in spec.blocks:
        out += [
            ids[("dense_op", b.dense_op)],
            ids[("sparse_op", b.sparse_op)],
            ids[("dense_dim", b.dense_dim)],
            ids[("sparse_dim", b.sparse_dim)],
        ]
        for kind in ("dense_in", "sparse_in"):
            nodes = [ids[(kind, j)] for j in getattr(b, kind)]
            out += nodes + [0] * (space.max_connections - len(nodes))
        out += [ids[("dense_sparse_interact", b.dense_sparse_interact)], ids[("deep_fm", b.deep_fm)]]
    return out


def tokens(space: SearchSpace, specs: Sequence[ArchSpec]) -> np.ndarray:
    """``(n, token_length(space))`` int64 token ids (0 = padding): :func:`tokenize` of each spec.

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> t = tokens(space, [space.sample(np.random.default_rng(i)) for i in range(2)])
    >>> t.shape, t.dtype
    ((2, 31), dtype('int64'))
    >>> tokens(space, []).shape
    (0, 31)
    """
    return np.asarray([tokenize(space, s) for s in specs], dtype=np.int64).reshape(len(specs), token_length(space))


# ---------------------------------------------------------------------- by name

#: featurizer kind -> batch function ``(space, specs) -> array(s)``.
FEATURIZERS = {"onehot": onehot, "graph": graphs, "tokens": tokens}


def featurize(kind: str, space: SearchSpace, specs: Sequence[ArchSpec]) -> Any:
    """``FEATURIZERS[kind](space, specs)``; an unknown kind is a ``ValueError`` listing the known ones.

    >>> from recnas.space import SearchSpace
    >>> featurize("onehot", SearchSpace.load("tiny"), []).shape
    (0, 64)
    >>> featurize("bag", SearchSpace.load("tiny"), [])
    Traceback (most recent call last):
        ...
    ValueError: unknown featurizer 'bag'; known featurizers are ['graph', 'onehot', 'tokens']
    """
    if kind not in FEATURIZERS:
        raise ValueError(f"unknown featurizer {kind!r}; known featurizers are {sorted(FEATURIZERS)}")
    return FEATURIZERS[kind](space, specs)
