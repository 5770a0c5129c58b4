"""Weight layouts and per-spec plans: how an architecture's tensors map onto shared weights.

Every model in :mod:`recnas.models` -- the supernet and the standalone :class:`CTRModel` -- is the
same elastic network code run over a :class:`NetLayout` (the largest size of everything) with a
:class:`NetPlan` (which slice of every weight one architecture uses):

* the supernet's layout comes from the search space: every block has every op of the space at its
  largest width, and an input slot for *every* earlier node, as wide as that node's largest output;
* a standalone model's layout comes from one spec: only the spec's ops, at exactly its widths, and
  slots only for the nodes that the spec connects.

A plan holds, per block, the row prefixes (elastic output widths) and the column index tensors
(input slots) of every weight. For a standalone model every index is the identity, so the plan has
no tensors and the forward pass touches whole weights; for the supernet it is built once per spec
and device and cached.

Slot layout of a block's input weights (columns, in order)::

    dense input x  : [node 0: W0 cols | node 1: Dmax cols | ... | node i: Dmax cols]
    sparse fields s: [node 0: n_sparse fields | node 1: Smax(+1) fields | ...]
    flat(s)        : field f of that field layout, column c  ->  f * e_max + c
    dot pairs p    : pair (a, b), a < b, of the fields z = [relu(P x); Q s] (1 + k fields, where
                     k = dot_fields(dense_dim)) -> row-major index into the strict upper
                     triangle of a (1 + k_max) x (1 + k_max) matrix

The dot op's field projection ``Q`` has ``k_max = dot_fields(Dmax)`` output rows (an elastic width,
like ``efc``'s output fields) and the usual sparse-field slots as columns; a subnet with
``dense_dim = d`` uses its first ``k = dot_fields(d)`` rows, so its ``z`` is the first ``1 + k``
fields of the largest ``z`` and its pairs are the pairs among those fields.

A subnet's tensors are the concatenation of the nodes it connects at their actual widths (their
first columns / fields), so its column indices are increasing and its pair order (row-major over
its own fields) maps to increasing max-layout pairs: the gathered weights are exactly the weights of
the standalone model built at the spec's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import math

import torch

from recnas.space.space import DENSE_OPS, READS_SPARSE, SPARSE_OPS  # the one list of op names and their facts
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

__all__ = [
    "DENSE_OPS",
    "SPARSE_OPS",
    "NUM_HEADS",
    "BlockLayout",
    "NetLayout",
    "BlockPlan",
    "NetPlan",
    "Index",
    "Live",
    "dot_fields",
    "liveness",
    "functional_key",
    "check_spec",
    "compile_plan",
    "spec_layout",
]

# DENSE_OPS / SPARSE_OPS (re-exported here) are defined once, in recnas.space.space: the space layer
# names the ops without importing torch; recnas.models.ops implements each (DENSE_OP_CLASSES /
# SPARSE_OP_CLASSES, which tests/test_models.py checks against these lists).
NUM_HEADS = 2

# Dense ops that read the sparse input s (fc and cross read only x): READS_SPARSE, from recnas.space.space.

# An index into a weight axis: None = the whole axis, int k = the first k entries, tensor = gather.
Index = Union[None, int, torch.Tensor]


def dot_fields(dense_dim: int) -> int:
    """Fields ``k = round(sqrt(2 * dense_dim))`` that the ``dot`` op projects its sparse input to.

    ``z = [relu(P x); Q s]`` then has ``1 + k`` fields and ``k (k + 1) / 2`` pairs, about
    ``dense_dim`` (NASRec's design: the pair layer grows with the output width, not with the
    square of the input field count). ``2 * dense_dim`` is an integer, so its square root is never
    exactly halfway between two integers and the rounding is unambiguous.
    """
    if dense_dim < 1:
        raise ValueError(f"dense_dim must be >= 1, got {dense_dim}")
    return round(math.sqrt(2 * dense_dim))


@dataclass(frozen=True)
class BlockLayout:
    """The largest version of one choice block.

    Attributes:
        dense_ops / sparse_ops: the ops this block holds weights for.
        dense_dim / sparse_dim: largest dense output width / sparse output field count.
        dense_slots: ``(node, largest dense width)`` per input slot, in column order.
        sparse_slots: ``(node, largest field count)`` per input slot, in field order.
        interact / deep_fm: whether the block holds the switch's weights.
        norm: whether the block holds LayerNorm weights (a supernet's blocks always do; a
            standalone block of a ``norm: none`` spec does not).
    """

    dense_ops: tuple[str, ...]
    sparse_ops: tuple[str, ...]
    dense_dim: int
    sparse_dim: int
    dense_slots: tuple[tuple[int, int], ...]
    sparse_slots: tuple[tuple[int, int], ...]
    interact: bool
    deep_fm: bool
    norm: bool = True

    @property
    def dense_in_width(self) -> int:
        return sum(w for _, w in self.dense_slots)

    @property
    def sparse_in_fields(self) -> int:
        return sum(f for _, f in self.sparse_slots)

    @property
    def out_fields(self) -> int:
        return self.sparse_dim + int(self.interact)

    @property
    def dot_fields(self) -> int:
        """Output fields of the dot op's field projection ``Q`` at this layout's width."""
        return dot_fields(self.dense_dim)


@dataclass(frozen=True)
class NetLayout:
    """The largest version of a whole network.

    Attributes:
        embedding_dim: largest embedding width ``e_max`` (table width).
        num_dense: raw dense features; 0 means node 0's dense output is the mean of embeddings.
        num_sparse: sparse features (node 0's field count).
        blocks: one layout per block.
        head_dense / head_fields: the head's input slots (last block's largest outputs).
    """

    embedding_dim: int
    num_dense: int
    num_sparse: int
    blocks: tuple[BlockLayout, ...]
    head_dense: int
    head_fields: int

    def node0_dense(self, e: int) -> int:
        return self.num_dense if self.num_dense > 0 else e


@dataclass(frozen=True)
class Live:
    """Which parts of a block can reach the logit (the rest is neither built nor run).

    A spec may leave outputs unread ("any connection" lets later blocks skip a node): a block's
    dense op is live if its ``y`` is read downstream (or feeds a live ``dense_sparse_interact``),
    its sparse op likewise; ``deep_fm`` is live if ``y`` is read, ``dense_sparse_interact`` if ``t`` is.
    """

    dense_op: bool
    sparse_op: bool
    deep_fm: bool
    interact: bool
    reads_x: bool
    reads_s: bool


def liveness(spec: ArchSpec) -> tuple[tuple[Live, ...], bool]:
    """Per-block :class:`Live` flags, and whether node 0's dense output is read at all."""
    n = spec.num_blocks
    need_y = [False] * (n + 1)
    need_t = [False] * (n + 1)
    need_y[n] = need_t[n] = True  # the head reads the last block's outputs
    out: list[Live] = []
    for i in reversed(range(n)):
        b = spec.blocks[i]
        ny, nt = need_y[i + 1], need_t[i + 1]
        y0 = ny or (nt and b.dense_sparse_interact)
        t0 = nt or (ny and b.deep_fm)
        reads_s = t0 or (y0 and b.dense_op in READS_SPARSE)
        if y0:
            for j in b.dense_in:
                need_y[j] = True
        if reads_s:
            for j in b.sparse_in:
                need_t[j] = True
        out.append(Live(y0, t0, ny and b.deep_fm, nt and b.dense_sparse_interact, y0, reads_s))
    return tuple(reversed(out)), need_y[0]


def functional_key(spec: ArchSpec) -> str:
    """A 16-hex-digit hash of the parts of ``spec`` that reach the logit.

    Two specs with the same functional key build the same model: :func:`liveness` decides what is
    built, and the choices it finds unread -- a dead op's type, width and inputs, the norm of a block
    with no live op -- are left out of the hash (:func:`recnas.identity.digest`); a switch enters as on
    only where it is on and read. ``spec.key()`` tells specs apart; this tells models apart (a search exports one model per functional key,
    :func:`recnas.export.run.export_run`). Specs that differ in a live choice never share it.
    """
    from recnas.identity import digest

    live, _ = liveness(spec)
    blocks = []
    for b, lv in zip(spec.blocks, live):
        d = b.to_dict()
        dead = []
        if not lv.dense_op:
            dead += ["dense_op", "dense_dim", "dense_in"]
        if not lv.sparse_op:
            dead += ["sparse_op", "sparse_dim"]
        if not lv.reads_s:
            dead.append("sparse_in")
        if not (lv.dense_op or lv.sparse_op):
            dead.append("norm")
        for k in dead:
            d.pop(k, None)
        # a switch counts by its effect: on and read (an unread switch builds nothing)
        d["deep_fm"], d["dense_sparse_interact"] = lv.deep_fm, lv.interact
        blocks.append(d)
    return digest({"embedding_dim": spec.embedding_dim, "blocks": blocks})


class BlockPlan:
    """Which slices of a block's weights one architecture uses (all sizes are the subnet's).

    ``x_cols`` dense-input columns; ``s_fields`` sparse-input field columns; ``s_flat`` flat(s)
    columns; ``heads`` attention rows per head; ``d_rows`` / ``s_rows`` / ``e_rows`` output-width
    prefixes (None when the layout is that size). Dot op only (None unless the block runs a live
    ``dot``): ``q_rows`` the prefix of ``Q``'s ``k_max`` output fields (``k = dot_fields(d)``),
    ``dot_cols`` columns of its final weight ``[x, p]``, ``pair_idx`` flat indices of the strict
    upper triangle of the subnet's ``(1 + k) x (1 + k)`` matrix ``z z^T``.
    """

    __slots__ = (
        "spec", "live", "dense_in", "sparse_in", "e", "d", "sd", "d_rows", "s_rows", "e_rows",
        "x_cols", "s_fields", "s_flat", "q_rows", "dot_cols", "pair_idx", "heads", "heads3",
    )

    def __init__(self, **kw: object) -> None:
        for k in self.__slots__:
            setattr(self, k, kw[k])


class NetPlan:
    """A compiled architecture: one :class:`BlockPlan` per block plus the head's columns."""

    __slots__ = ("spec", "e", "e_rows", "blocks", "head_cols")

    def __init__(self, spec: ArchSpec, e: int, e_rows: int | None, blocks: list[BlockPlan], head_cols: Index):
        self.spec = spec
        self.e = e
        self.e_rows = e_rows
        self.blocks = blocks
        self.head_cols = head_cols


# -- layouts --------------------------------------------------------------------------------------
def spec_layout(num_dense: int, num_sparse: int, spec: ArchSpec) -> NetLayout:
    """The layout of the standalone model of ``spec``: its ops at exactly its sizes.

    Slots exist only for the connected nodes, each exactly as wide as that node's output; ops and
    switches that cannot reach the logit (see :func:`liveness`) are left out.
    """
    e = spec.embedding_dim
    dense_w = [num_dense if num_dense > 0 else e]
    fields = [num_sparse]
    blocks = []
    live, _ = liveness(spec)
    for b, lv in zip(spec.blocks, live):
        blocks.append(
            BlockLayout(
                dense_ops=(b.dense_op,) if lv.dense_op else (),
                sparse_ops=(b.sparse_op,) if lv.sparse_op else (),
                dense_dim=b.dense_dim,
                sparse_dim=b.sparse_dim,
                dense_slots=tuple((j, dense_w[j]) for j in b.dense_in),
                sparse_slots=tuple((j, fields[j]) for j in b.sparse_in),
                interact=lv.interact,
                deep_fm=lv.deep_fm,
                norm=b.norm == "layernorm",
            )
        )
        dense_w.append(b.dense_dim)
        fields.append(b.sparse_out_fields)
    return NetLayout(e, num_dense, num_sparse, tuple(blocks), dense_w[-1], fields[-1])


# -- validation -----------------------------------------------------------------------------------
def check_spec(layout: NetLayout, spec: ArchSpec, what: str = "model") -> None:
    """Raises :class:`SpecError` naming the first choice of ``spec`` that ``layout`` cannot run."""
    if not isinstance(spec, ArchSpec):
        raise SpecError(f"expected an ArchSpec, got {type(spec).__name__}")
    if spec.embedding_dim > layout.embedding_dim:
        raise SpecError(
            f"embedding_dim: {spec.embedding_dim} is larger than this {what}'s tables "
            f"({layout.embedding_dim} columns)"
        )
    if spec.num_blocks > len(layout.blocks):
        raise SpecError(f"blocks: spec has {spec.num_blocks} blocks but this {what} has {len(layout.blocks)}")
    live, _ = liveness(spec)
    for i, (b, bl, lv) in enumerate(zip(spec.blocks, layout.blocks, live)):
        where = f"blocks[{i}]"
        if b.dense_op not in DENSE_OPS:
            raise SpecError(f"{where}.dense_op: unknown op {b.dense_op!r}; known ops are {list(DENSE_OPS)}")
        if b.sparse_op not in SPARSE_OPS:
            raise SpecError(f"{where}.sparse_op: unknown op {b.sparse_op!r}; known ops are {list(SPARSE_OPS)}")
        if lv.dense_op and b.dense_op not in bl.dense_ops:
            raise SpecError(f"{where}.dense_op: {b.dense_op!r} is not in this {what} (it has {list(bl.dense_ops)})")
        if lv.sparse_op and b.sparse_op not in bl.sparse_ops:
            raise SpecError(f"{where}.sparse_op: {b.sparse_op!r} is not in this {what} (it has {list(bl.sparse_ops)})")
        if b.dense_dim > bl.dense_dim:
            raise SpecError(f"{where}.dense_dim: {b.dense_dim} exceeds this {what}'s largest ({bl.dense_dim})")
        if b.sparse_dim > bl.sparse_dim:
            raise SpecError(f"{where}.sparse_dim: {b.sparse_dim} exceeds this {what}'s largest ({bl.sparse_dim})")
        if lv.interact and not bl.interact:
            raise SpecError(f"{where}.dense_sparse_interact: this {what} has no dense-sparse-interact weights")
        if lv.deep_fm and not bl.deep_fm:
            raise SpecError(f"{where}.deep_fm: this {what} has no deep_fm weights")
        if b.norm == "layernorm" and not bl.norm:
            raise SpecError(f"{where}.norm: this {what}'s block has no LayerNorm weights (built for norm 'none')")
        if b.sparse_op == "attention" and spec.embedding_dim % NUM_HEADS:
            raise SpecError(
                f"{where}.sparse_op: attention uses {NUM_HEADS} heads, so embedding_dim must be a "
                f"multiple of {NUM_HEADS} (got {spec.embedding_dim})"
            )
        for name, slots in (("dense_in", bl.dense_slots), ("sparse_in", bl.sparse_slots)):
            have = {j for j, _ in slots}
            bad = [j for j in getattr(b, name) if j not in have]
            if bad:
                raise SpecError(f"{where}.{name}: nodes {bad} have no input slot in this {what}")


# -- plans ----------------------------------------------------------------------------------------
def _index(idx: list[int], full: int, device: torch.device) -> Index:
    """None if ``idx`` is the whole axis, k if it is the first k entries, else a gather tensor."""
    n = len(idx)
    if idx == list(range(n)):
        return None if n == full else n
    return torch.tensor(idx, dtype=torch.long, device=device)


def _prefix(k: int, full: int) -> int | None:
    return None if k == full else k


def _slot_cols(slots: tuple[tuple[int, int], ...], used: tuple[int, ...], widths: list[int]) -> list[int]:
    """Columns of the nodes ``used`` (at their actual ``widths``) in a slot layout."""
    offset = {}
    o = 0
    for j, w in slots:
        offset[j] = o
        o += w
    cols: list[int] = []
    for j in used:
        cols.extend(range(offset[j], offset[j] + widths[j]))
    return cols


def _block_plan(
    layout: NetLayout, bl: BlockLayout, b: BlockSpec, lv: Live, e: int, dense_w: list[int], fields: list[int],
    device: torch.device,
) -> BlockPlan:
    e_max = layout.embedding_dim
    x_cols = _slot_cols(bl.dense_slots, b.dense_in, dense_w)
    f_cols = _slot_cols(bl.sparse_slots, b.sparse_in, fields)
    flat = [f * e_max + c for f in f_cols for c in range(e)]
    dx_max = bl.dense_in_width
    q_rows: Index = None
    dot_cols: Index = None
    pair_idx: torch.Tensor | None = None
    if lv.dense_op and b.dense_op == "dot":
        # z = [relu(P x); Q s]: the subnet's 1 + k fields are the first 1 + k of the largest z, so
        # its pair (a, c), a < c, is pair (a, c) of the (1 + k_max)-field upper triangle.
        k, k_max = dot_fields(b.dense_dim), bl.dot_fields
        z, z_max = 1 + k, 1 + k_max
        pair_cols = [a * z_max - a * (a + 1) // 2 + (c - a - 1) for a in range(z) for c in range(a + 1, z)]
        dot_cols = _index(x_cols + [dx_max + q for q in pair_cols], dx_max + z_max * (z_max - 1) // 2, device)
        q_rows = _prefix(k, k_max)
        pair_idx = torch.triu_indices(z, z, 1, device=device)
        pair_idx = pair_idx[0] * z + pair_idx[1]
    # attention: each head keeps the first e/H rows of its own max-size rows
    h_max, h = e_max // NUM_HEADS, e // NUM_HEADS
    heads = [hh * h_max + c for hh in range(NUM_HEADS) for c in range(h)]
    heads3 = [k * e_max + r for k in range(3) for r in heads]
    return BlockPlan(
        spec=b,
        live=lv,
        dense_in=b.dense_in,
        sparse_in=b.sparse_in,
        e=e,
        d=b.dense_dim,
        sd=b.sparse_dim,
        d_rows=_prefix(b.dense_dim, bl.dense_dim),
        s_rows=_prefix(b.sparse_dim, bl.sparse_dim),
        e_rows=_prefix(e, e_max),
        x_cols=_index(x_cols, dx_max, device),
        s_fields=_index(f_cols, bl.sparse_in_fields, device),
        s_flat=_index(flat, bl.sparse_in_fields * e_max, device),
        q_rows=q_rows,
        dot_cols=dot_cols,
        pair_idx=pair_idx,
        heads=_index(heads, e_max, device) if e_max % NUM_HEADS == 0 else None,
        heads3=_index(heads3, 3 * e_max, device) if e_max % NUM_HEADS == 0 else None,
    )


def compile_plan(layout: NetLayout, spec: ArchSpec, device: torch.device) -> NetPlan:
    """Builds the index tensors (on ``device``) that run ``spec`` over weights laid out as ``layout``.

    Call :func:`check_spec` first; this assumes the spec fits.
    """
    e = spec.embedding_dim
    e_max = layout.embedding_dim
    dense_w = [layout.node0_dense(e)]
    fields = [layout.num_sparse]
    blocks = []
    live, _ = liveness(spec)
    for b, bl, lv in zip(spec.blocks, layout.blocks, live):
        blocks.append(_block_plan(layout, bl, b, lv, e, dense_w, fields, device))
        dense_w.append(b.dense_dim)
        fields.append(b.sparse_out_fields)
    d_last, f_last = dense_w[-1], fields[-1]
    head_cols = list(range(d_last)) + [
        layout.head_dense + f * e_max + c for f in range(f_last) for c in range(e)
    ]
    head = _index(head_cols, layout.head_dense + layout.head_fields * e_max, device)
    return NetPlan(spec, e, _prefix(e, e_max), blocks, head)
