"""The elastic ops of a choice block (exact semantics in ``spaces/README.md``).

Each op owns the weights of its largest version (a :class:`~recnas.models.layout.BlockLayout`) and
runs any smaller version given a :class:`~recnas.models.layout.BlockPlan`: ``sliced(plan)`` returns
the weights that version uses (row prefixes for elastic output widths, gathered columns for input
slots) and ``forward`` computes with exactly those tensors, never with masks over the full width.
A standalone model instantiates the same classes at the spec's sizes, where every slice is the
whole tensor, so ``sliced(plan)`` of a supernet op *is* the standalone op's state dict.

Shapes: ``x`` dense input ``(B, Dx)``; ``s`` sparse input ``(B, Ns, e)``; dense op output
``(B, d)``; sparse op output ``(B, sd, e)``.

Initialisation follows PyTorch's ``nn.Linear`` / ``nn.MultiheadAttention`` / ``nn.LayerNorm``
defaults, with the fan-in of the weight as laid out (for a standalone model, its true fan-in).

Elastic LayerNorm (NASRec's ``use_layernorm=1``): every linear map of the dense ops, and the
``deep_fm`` / ``dense_sparse_interact`` projections, is followed by a LayerNorm over exactly the
subnet's active units, before the activation. Its affine weight / bias are the first ``d`` entries of
the largest LN's ``(Dmax,)`` parameters (``{name}_weight`` / ``{name}_bias``, initialised to 1 / 0),
so a standalone model at the spec's sizes holds exactly the slices. The linear biases are kept
(redundant before an LN's bias, but harmless, and it keeps every op's linear layer the same).

A block whose spec says ``norm: none`` (:data:`recnas.space.spec.NORMS`) runs the same ops with every
one of these LayerNorms left out (the identity); attention's own two LayerNorms stay. Its standalone
model holds no LayerNorm weights; a supernet (which always holds them) does not slice them for it.
"""

from __future__ import annotations

import contextvars
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recnas.models.layout import NUM_HEADS, BlockLayout, BlockPlan, Index, dot_fields

__all__ = [
    "take",
    "SliceLeaf",
    "slice_leaves",
    "ElasticFC",
    "ElasticDot",
    "ElasticGating",
    "ElasticSum",
    "ElasticCross",
    "ElasticEFC",
    "ElasticAttention",
    "DeepFM",
    "DenseSparseInteract",
    "Head",
    "DENSE_OP_CLASSES",
    "SPARSE_OP_CLASSES",
]


#: Version of the ops' semantics (``spaces/README.md``), pinned by search journals: a run folder
#: whose candidates were scored under other ops is refused instead of mixing the two. 1: the first
#: release; 2: LayerNorm after every dense linear map, switch and ``efc``.
OPS_VERSION = 2

@dataclass
class SliceLeaf:
    """One parameter slice that a forward under :func:`slice_leaves` read: ``leaf`` holds the values
    of ``take(param, rows, cols)`` as a leaf of the autograd graph (its own ``.grad`` after
    backward), so the parameter itself gets no full-size gradient."""

    param: nn.Parameter
    rows: Index
    cols: Index
    leaf: torch.Tensor


_LEAVES: contextvars.ContextVar[list[SliceLeaf] | None] = contextvars.ContextVar("recnas_slice_leaves", default=None)


@contextmanager
def slice_leaves(records: list[SliceLeaf] | None = None) -> Iterator[list[SliceLeaf]]:
    """Inside the block, :func:`take` of a parameter that needs a gradient (with grad mode on and a
    real slice: ``rows`` or ``cols`` given) returns a detached copy of the slice as a new autograd
    leaf and appends a :class:`SliceLeaf` to ``records`` (yielded). The forward values are the
    same tensors as without it, and each leaf's gradient equals the slice of the gradient the
    parameter would have got (which is zero outside the slices), so an optimizer that updates only
    the slices (:mod:`recnas.train.sliced`) does what a full-tensor update would do, at the cost of
    the slices instead of the whole shared tensors. Outside the block ``take`` is unchanged."""
    records = [] if records is None else records
    token = _LEAVES.set(records)
    try:
        yield records
    finally:
        _LEAVES.reset(token)


#: Column indices with more runs of consecutive values than this are gathered element by element.
MAX_RUNS = 64
_RUNS_CACHE_SIZE = 4096
# id(index tensor) -> (a weak reference to it, its runs); an entry counts only while the reference is
# to that same tensor (an id can be reused after the tensor is gone)
_RUNS: OrderedDict[int, tuple[weakref.ref, tuple[tuple[int, int, int], ...] | None]] = OrderedDict()


def index_runs(idx: torch.Tensor) -> tuple[tuple[int, int, int], ...] | None:
    """An increasing CPU index tensor as runs ``(first value, position, length)`` of consecutive
    values (a plan's input columns are a few slots' prefixes), or ``None`` (another device, or more
    than :data:`MAX_RUNS` runs). Cached per index tensor (a plan's tensors live as long as the plan)."""
    if idx.device.type != "cpu" or idx.dim() != 1:
        return None
    hit = _RUNS.get(id(idx))
    if hit is not None and hit[0]() is idx:
        return hit[1]
    a = idx.numpy()
    starts = np.concatenate(([0], np.flatnonzero(np.diff(a) != 1) + 1)) if a.size else np.zeros(0, dtype=np.int64)
    runs = None
    if 0 < len(starts) <= MAX_RUNS:
        ends = np.append(starts[1:], a.size)
        runs = tuple((int(a[i]), int(i), int(j - i)) for i, j in zip(starts, ends))
    _RUNS[id(idx)] = (weakref.ref(idx), runs)
    _RUNS.move_to_end(id(idx))
    if len(_RUNS) > _RUNS_CACHE_SIZE:
        _RUNS.popitem(last=False)
    return runs


def _take(w: torch.Tensor, rows: Index, cols: Index) -> torch.Tensor:
    if rows is not None:
        w = w[:rows] if isinstance(rows, int) else w.index_select(0, rows)
    if cols is None:
        return w
    if isinstance(cols, int):
        return w[:, :cols]
    runs = None if (w.requires_grad and torch.is_grad_enabled()) else index_runs(cols)
    if runs is None:  # (with autograd, index_select's backward is one scatter; a cat of runs' is one per run)
        return w.index_select(1, cols)
    # the same values as index_select, copied run by run (rows of contiguous memory, not element by element)
    return torch.cat([w[:, a : a + n] for a, _, n in runs], dim=1)


def take(w: torch.Tensor, rows: Index = None, cols: Index = None) -> torch.Tensor:
    """``w[rows][:, cols]`` for an :data:`Index` on each axis (1-D ``w``: rows only).

    Under :func:`slice_leaves`, a parameter's slice comes back as a recorded autograd leaf."""
    records = _LEAVES.get()
    if (records is not None and (rows is not None or cols is not None) and isinstance(w, nn.Parameter)
            and w.requires_grad and torch.is_grad_enabled()):
        leaf = _take(w.detach(), rows, cols).requires_grad_(True)
        records.append(SliceLeaf(w, rows, cols, leaf))
        return leaf
    return _take(w, rows, cols)


def _linear_init(w: torch.Tensor, b: torch.Tensor | None, fan_in: int) -> None:
    # nn.Linear's default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(max(fan_in, 1))
    with torch.no_grad():
        w.uniform_(-bound, bound)
        if b is not None:
            b.uniform_(-bound, bound)


def _param(*shape: int, device: torch.device | None) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, device=device))


def _ln_init(*weights_and_biases: torch.Tensor) -> None:
    """``nn.LayerNorm``'s default affine init: weights (even positions) 1, biases (odd positions) 0."""
    with torch.no_grad():
        for i, t in enumerate(weights_and_biases):
            t.fill_(1.0 if i % 2 == 0 else 0.0)


def _ln(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last axis of ``h`` ``(..., d)`` with the sliced affine ``w``, ``b`` ``(d,)``."""
    return F.layer_norm(h, (h.shape[-1],), w, b)


def _add_norms(m: nn.Module, bl: BlockLayout, device: torch.device | None, **dims: int) -> None:
    """Registers the LayerNorm affines ``{name}_weight`` / ``{name}_bias`` ``(dim,)`` for each
    ``name=dim``, in that order, when the block holds LayerNorms (``bl.norm``); else none."""
    m.norm_names = tuple(dims) if bl.norm else ()
    for name in m.norm_names:
        setattr(m, f"{name}_weight", _param(dims[name], device=device))
        setattr(m, f"{name}_bias", _param(dims[name], device=device))


def _init_norms(m: nn.Module) -> None:
    _ln_init(*(getattr(m, f"{n}_{k}") for n in m.norm_names for k in ("weight", "bias")))


def _norm_slices(m: nn.Module, p: BlockPlan, **rows: Index) -> dict[str, torch.Tensor]:
    """The LayerNorm affines the plan's block uses: ``{name}_weight`` / ``{name}_bias`` cut to
    ``rows[name]``, or none when its spec says ``norm: none``."""
    if p.spec.norm != "layernorm":
        return {}
    return {f"{n}_{k}": take(getattr(m, f"{n}_{k}"), rows[n]) for n in rows for k in ("weight", "bias")}


def _normed(h: torch.Tensor, w: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """``LN(h)`` with the affine ``w[name_weight]``, ``w[name_bias]`` when sliced, else ``h``."""
    if f"{name}_weight" not in w:
        return h
    return _ln(h, w[f"{name}_weight"], w[f"{name}_bias"])


def _efc(s: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``out[:, k, :] = sum_f w[k, f] s[:, f, :] + b[k]``: ``(B, Ns, e)`` -> ``(B, sd, e)``."""
    return F.linear(s.transpose(1, 2), w, b).transpose(1, 2)


class ElasticFC(nn.Module):
    """``fc``: ``relu(LN(W x + b))``. ``W`` is ``(Dmax, Dx_slots)``; LN ``norm_*`` ``(Dmax,)``."""

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = _param(bl.dense_dim, bl.dense_in_width, device=device)
        self.bias = _param(bl.dense_dim, device=device)
        _add_norms(self, bl, device, norm=bl.dense_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight, self.bias, self.weight.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight": take(self.weight, p.d_rows, p.x_cols),
            "bias": take(self.bias, p.d_rows),
            **_norm_slices(self, p, norm=p.d_rows),
        }

    def forward(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """x ``(B, Dx)``, s unused -> ``(B, d)``."""
        w = self.sliced(p)
        return F.relu(_normed(F.linear(x, w["weight"], w["bias"]), w, "norm"))

    @staticmethod
    def macs(d: int, dx: int, ns: int, e: int) -> int:
        return d * dx


class ElasticDot(nn.Module):
    """``dot`` (DLRM/NASRec interaction) -> ``(B, d)``.

    ``q = Q s + b_q`` projects the ``Ns`` sparse input fields to ``k = dot_fields(d) =
    round(sqrt(2 d))`` fields (a field-axis linear map, like ``efc``), ``(B, k, e)``;
    ``z = [relu(P x) as one field; q]`` ``(B, 1 + k, e)``; ``p`` = strict upper triangle of
    ``z z^T`` (row-major), ``(B, k (k + 1) / 2)``; output ``relu(LN(W [x, p] + b))``. ``relu(P x)`` is
``relu(LN_e(P x))``, a LayerNorm over its ``e`` units.

    Weights as laid out: ``proj`` = ``P`` ``(e_max, Dx_slots)`` (no bias); ``field_proj`` = ``Q``
    ``(k_max, Ns_slots)`` and ``field_proj_bias`` ``(k_max,)`` with ``k_max = dot_fields(Dmax)``;
    ``weight`` = ``W`` ``(Dmax, Dx_slots + k_max (k_max + 1) / 2)``, ``bias`` ``(Dmax,)``; LNs
    ``proj_norm_*`` ``(e_max,)`` and ``norm_*`` ``(Dmax,)``. A subnet
    uses ``Q``'s first ``k`` rows (its slot columns as ``efc``) and the pairs among the first
    ``1 + k`` fields of the largest ``z``, see :mod:`recnas.models.layout`.
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        k = bl.dot_fields
        self.proj = _param(e_max, bl.dense_in_width, device=device)
        self.field_proj = _param(k, bl.sparse_in_fields, device=device)
        self.field_proj_bias = _param(k, device=device)
        self.weight = _param(bl.dense_dim, bl.dense_in_width + k * (k + 1) // 2, device=device)
        self.bias = _param(bl.dense_dim, device=device)
        _add_norms(self, bl, device, proj_norm=e_max, norm=bl.dense_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.proj, None, self.proj.shape[1])
        _linear_init(self.field_proj, self.field_proj_bias, self.field_proj.shape[1])
        _linear_init(self.weight, self.bias, self.weight.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "proj": take(self.proj, p.e_rows, p.x_cols),
            "field_proj": take(self.field_proj, p.q_rows, p.s_fields),
            "field_proj_bias": take(self.field_proj_bias, p.q_rows),
            "weight": take(self.weight, p.d_rows, p.dot_cols),
            "bias": take(self.bias, p.d_rows),
            **_norm_slices(self, p, proj_norm=p.e_rows, norm=p.d_rows),
        }

    def forward(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """x ``(B, Dx)``, s ``(B, Ns, e)`` -> ``(B, d)``."""
        w = self.sliced(p)
        px = F.relu(_normed(F.linear(x, w["proj"]), w, "proj_norm"))  # (B, e)
        q = _efc(s, w["field_proj"], w["field_proj_bias"])  # q = Q s + b_q over the field axis: (B, k, e)
        z = torch.cat([px.unsqueeze(1), q], dim=1)  # (B, 1+k, e)
        zz = torch.bmm(z, z.transpose(1, 2)).flatten(1)  # (B, (1+k)^2)
        pairs = zz.index_select(1, p.pair_idx)  # (B, k(k+1)/2)
        h = torch.cat([x, pairs], dim=1)
        return F.relu(_normed(F.linear(h, w["weight"], w["bias"]), w, "norm"))

    @staticmethod
    def macs(d: int, dx: int, ns: int, e: int) -> int:
        k = dot_fields(d)
        pairs = k * (k + 1) // 2
        # P x, Q s over the field axis, the strict upper triangle of z z^T, then W [x, p]
        return e * dx + k * ns * e + pairs * e + d * (dx + pairs)


class _TwoBranch(nn.Module):
    """Shared weights of ``gating`` and ``sum``: ``W1 (Dmax, Dx_slots)``, ``W2 (Dmax, Ns_slots * e_max)``.

    Branches ``a = relu(LN1(W1 x + b1))`` and ``b = LN2(W2 flat(s) + b2)`` (before its activation),
    LNs ``norm1_*``, ``norm2_*`` ``(Dmax,)``.
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight1 = _param(bl.dense_dim, bl.dense_in_width, device=device)
        self.bias1 = _param(bl.dense_dim, device=device)
        self.weight2 = _param(bl.dense_dim, bl.sparse_in_fields * e_max, device=device)
        self.bias2 = _param(bl.dense_dim, device=device)
        _add_norms(self, bl, device, norm1=bl.dense_dim, norm2=bl.dense_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight1, self.bias1, self.weight1.shape[1])
        _linear_init(self.weight2, self.bias2, self.weight2.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight1": take(self.weight1, p.d_rows, p.x_cols),
            "bias1": take(self.bias1, p.d_rows),
            "weight2": take(self.weight2, p.d_rows, p.s_flat),
            "bias2": take(self.bias2, p.d_rows),
            **_norm_slices(self, p, norm1=p.d_rows, norm2=p.d_rows),
        }

    def _branches(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """x ``(B, Dx)``, s ``(B, Ns, e)`` -> ``a = relu(LN1(W1 x + b1))``, ``b = LN2(W2 flat(s) + b2)``, ``(B, d)``."""
        w = self.sliced(p)
        a = F.relu(_normed(F.linear(x, w["weight1"], w["bias1"]), w, "norm1"))
        b = F.linear(s.reshape(s.shape[0], -1), w["weight2"], w["bias2"])
        return a, _normed(b, w, "norm2")

    @staticmethod
    def macs(d: int, dx: int, ns: int, e: int) -> int:
        return d * dx + d * ns * e


class ElasticGating(_TwoBranch):
    """``gating``: ``relu(LN1(W1 x + b1)) * sigmoid(LN2(W2 flat(s) + b2))`` -> ``(B, d)``."""

    def forward(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        a, b = self._branches(x, s, p)
        return a * torch.sigmoid(b)


class ElasticSum(_TwoBranch):
    """``sum``: ``relu(LN1(W1 x + b1)) + relu(LN2(W2 flat(s) + b2))`` -> ``(B, d)``."""

    def forward(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        a, b = self._branches(x, s, p)
        return a + F.relu(b)


class ElasticCross(nn.Module):
    """``cross`` (DCN-v2 layer): ``u = LN0(W0 x + b0)``; ``u * (W1 u + b1) + u`` -> ``(B, d)``.

    LN0 ``norm0_*`` ``(Dmax,)``; no LN after ``W1 u``.
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight0 = _param(bl.dense_dim, bl.dense_in_width, device=device)
        self.bias0 = _param(bl.dense_dim, device=device)
        self.weight1 = _param(bl.dense_dim, bl.dense_dim, device=device)
        self.bias1 = _param(bl.dense_dim, device=device)
        _add_norms(self, bl, device, norm0=bl.dense_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight0, self.bias0, self.weight0.shape[1])
        _linear_init(self.weight1, self.bias1, self.weight1.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight0": take(self.weight0, p.d_rows, p.x_cols),
            "bias0": take(self.bias0, p.d_rows),
            "weight1": take(self.weight1, p.d_rows, p.d_rows),
            "bias1": take(self.bias1, p.d_rows),
            **_norm_slices(self, p, norm0=p.d_rows),
        }

    def forward(self, x: torch.Tensor, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """x ``(B, Dx)``, s unused -> ``(B, d)``."""
        w = self.sliced(p)
        u = _normed(F.linear(x, w["weight0"], w["bias0"]), w, "norm0")
        return u * F.linear(u, w["weight1"], w["bias1"]) + u

    @staticmethod
    def macs(d: int, dx: int, ns: int, e: int) -> int:
        return d * dx + d * d


class ElasticEFC(nn.Module):
    """``efc``: ``LN_e(W s + b)``, a linear map over the field axis, then a LayerNorm of every output
    field over its ``e`` units. ``W`` is ``(Smax, Ns_slots)``; LN ``norm_*`` ``(e_max,)``.

    Without the LN, stacked ``efc`` blocks multiply the embedding scale block by block, and NASRec's
    lr 0.12 blew the warm-up up (loss 7e5 within 60 steps; see spaces/README.md)."""

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = _param(bl.sparse_dim, bl.sparse_in_fields, device=device)
        self.bias = _param(bl.sparse_dim, device=device)
        _add_norms(self, bl, device, norm=e_max)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight, self.bias, self.weight.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight": take(self.weight, p.s_rows, p.s_fields),
            "bias": take(self.bias, p.s_rows),
            **_norm_slices(self, p, norm=p.e_rows),
        }

    def forward(self, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """s ``(B, Ns, e)`` -> ``(B, sd, e)``."""
        w = self.sliced(p)
        return _normed(_efc(s, w["weight"], w["bias"]), w, "norm")

    @staticmethod
    def macs(sd: int, ns: int, e: int) -> int:
        return sd * ns * e


class ElasticAttention(nn.Module):
    """``attention``: ``a = efc(s)``; ``h = LN(a + MHA(a))``; ``LN(h + W4 relu(W3 h))`` -> ``(B, sd, e)``.

    Self-attention over the ``sd`` fields with :data:`NUM_HEADS` heads of width ``e / NUM_HEADS``.
    Elastic ``e``: head ``k`` uses the first ``e/H`` of its own ``e_max/H`` query/key/value rows, the
    output projection the matching columns; LayerNorms and the FFN use their first ``e`` units. The
    field axis is never padded (``a`` has exactly ``sd`` fields), so no attention mask is needed.
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.efc_weight = _param(bl.sparse_dim, bl.sparse_in_fields, device=device)
        self.efc_bias = _param(bl.sparse_dim, device=device)
        self.in_proj_weight = _param(3 * e_max, e_max, device=device)
        self.in_proj_bias = _param(3 * e_max, device=device)
        self.out_proj_weight = _param(e_max, e_max, device=device)
        self.out_proj_bias = _param(e_max, device=device)
        self.norm1_weight = _param(e_max, device=device)
        self.norm1_bias = _param(e_max, device=device)
        self.ffn1_weight = _param(e_max, e_max, device=device)
        self.ffn1_bias = _param(e_max, device=device)
        self.ffn2_weight = _param(e_max, e_max, device=device)
        self.ffn2_bias = _param(e_max, device=device)
        self.norm2_weight = _param(e_max, device=device)
        self.norm2_bias = _param(e_max, device=device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.efc_weight, self.efc_bias, self.efc_weight.shape[1])
        e = self.out_proj_weight.shape[0]
        with torch.no_grad():
            nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention
            self.in_proj_bias.zero_()
            _linear_init(self.out_proj_weight, None, e)
            self.out_proj_bias.zero_()
            for w, b in ((self.norm1_weight, self.norm1_bias), (self.norm2_weight, self.norm2_bias)):
                w.fill_(1.0)
                b.zero_()
        _linear_init(self.ffn1_weight, self.ffn1_bias, e)
        _linear_init(self.ffn2_weight, self.ffn2_bias, e)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        e = p.e_rows
        return {
            "efc_weight": take(self.efc_weight, p.s_rows, p.s_fields),
            "efc_bias": take(self.efc_bias, p.s_rows),
            "in_proj_weight": take(self.in_proj_weight, p.heads3, e),
            "in_proj_bias": take(self.in_proj_bias, p.heads3),
            "out_proj_weight": take(self.out_proj_weight, e, p.heads),
            "out_proj_bias": take(self.out_proj_bias, e),
            "norm1_weight": take(self.norm1_weight, e),
            "norm1_bias": take(self.norm1_bias, e),
            "ffn1_weight": take(self.ffn1_weight, e, e),
            "ffn1_bias": take(self.ffn1_bias, e),
            "ffn2_weight": take(self.ffn2_weight, e, e),
            "ffn2_bias": take(self.ffn2_bias, e),
            "norm2_weight": take(self.norm2_weight, e),
            "norm2_bias": take(self.norm2_bias, e),
        }

    def forward(self, s: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """s ``(B, Ns, e)`` -> ``(B, sd, e)``."""
        w = self.sliced(p)
        a = _efc(s, w["efc_weight"], w["efc_bias"])  # (B, sd, e)
        bsz, n, e = a.shape
        qkv = F.linear(a, w["in_proj_weight"], w["in_proj_bias"])  # (B, sd, 3e)
        qkv = qkv.view(bsz, n, 3, NUM_HEADS, e // NUM_HEADS).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, H, sd, e/H)
        o = o.transpose(1, 2).reshape(bsz, n, e)
        o = F.linear(o, w["out_proj_weight"], w["out_proj_bias"])
        h = F.layer_norm(a + o, (e,), w["norm1_weight"], w["norm1_bias"])
        f = F.linear(F.relu(F.linear(h, w["ffn1_weight"], w["ffn1_bias"])), w["ffn2_weight"], w["ffn2_bias"])
        return F.layer_norm(h + f, (e,), w["norm2_weight"], w["norm2_bias"])

    @staticmethod
    def macs(sd: int, ns: int, e: int) -> int:
        # efc + q,k,v,out projections + scores and weighted values + the two FFN layers
        return sd * ns * e + 4 * sd * e * e + 2 * sd * sd * e + 2 * sd * e * e


class DeepFM(nn.Module):
    """``deep_fm`` switch: ``y0 + LN(W_fm FM(t0))``, ``FM(t) = 0.5((sum_f t_f)^2 - sum_f t_f^2)`` ``(B, e)``.

    ``W_fm`` ``(Dmax, e_max)`` (no bias); LN ``norm_*`` ``(Dmax,)`` over the ``d`` projected units.
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = _param(bl.dense_dim, e_max, device=device)
        _add_norms(self, bl, device, norm=bl.dense_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight, None, self.weight.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight": take(self.weight, p.d_rows, p.e_rows),
            **_norm_slices(self, p, norm=p.d_rows),
        }

    def forward(self, y0: torch.Tensor, t0: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """y0 ``(B, d)``, t0 ``(B, sd, e)`` -> ``(B, d)``."""
        w = self.sliced(p)
        fm = 0.5 * (t0.sum(1).square() - t0.square().sum(1))
        return y0 + _normed(F.linear(fm, w["weight"]), w, "norm")

    @staticmethod
    def macs(d: int, sd: int, e: int) -> int:
        return sd * e + e + d * e  # squares of the fields and of their sum, then the projection


class DenseSparseInteract(nn.Module):
    """``dense_sparse_interact`` switch: ``[t0; LN(W_i y0 + b_i)]`` -> ``(B, sd + 1, e)``.

    ``W_i`` ``(e_max, Dmax)``, ``b_i`` and LN ``norm_*`` ``(e_max,)`` (over the field's ``e`` units).
    """

    def __init__(self, bl: BlockLayout, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = _param(e_max, bl.dense_dim, device=device)
        self.bias = _param(e_max, device=device)
        _add_norms(self, bl, device, norm=e_max)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight, self.bias, self.weight.shape[1])
        _init_norms(self)

    def sliced(self, p: BlockPlan) -> dict[str, torch.Tensor]:
        return {
            "weight": take(self.weight, p.e_rows, p.d_rows),
            "bias": take(self.bias, p.e_rows),
            **_norm_slices(self, p, norm=p.e_rows),
        }

    def forward(self, y0: torch.Tensor, t0: torch.Tensor, p: BlockPlan) -> torch.Tensor:
        """y0 ``(B, d)``, t0 ``(B, sd, e)`` -> ``(B, sd + 1, e)``."""
        w = self.sliced(p)
        extra = _normed(F.linear(y0, w["weight"], w["bias"]), w, "norm")
        return torch.cat([t0, extra.unsqueeze(1)], dim=1)

    @staticmethod
    def macs(d: int, e: int) -> int:
        return d * e


class Head(nn.Module):
    """``logit = W_h [y, flat(t)] + b_h`` over the last block's outputs -> ``(B,)``."""

    def __init__(self, dense: int, fields: int, e_max: int, device: torch.device | None = None) -> None:
        super().__init__()
        self.weight = _param(1, dense + fields * e_max, device=device)
        self.bias = _param(1, device=device)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _linear_init(self.weight, self.bias, self.weight.shape[1])

    def sliced(self, cols: Index) -> dict[str, torch.Tensor]:
        return {"weight": take(self.weight, None, cols), "bias": self.bias}

    def forward(self, y: torch.Tensor, t: torch.Tensor, cols: Index) -> torch.Tensor:
        """y ``(B, d)``, t ``(B, F, e)`` -> logits ``(B,)``."""
        w = self.sliced(cols)
        h = torch.cat([y, t.reshape(t.shape[0], -1)], dim=1)
        return F.linear(h, w["weight"], w["bias"]).squeeze(1)

    @staticmethod
    def macs(d: int, fields: int, e: int) -> int:
        return d + fields * e


DENSE_OP_CLASSES: dict[str, type[nn.Module]] = {
    "fc": ElasticFC,
    "dot": ElasticDot,
    "gating": ElasticGating,
    "sum": ElasticSum,
    "cross": ElasticCross,
}
SPARSE_OP_CLASSES: dict[str, type[nn.Module]] = {"efc": ElasticEFC, "attention": ElasticAttention}
