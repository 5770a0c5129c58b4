"""ZiCo (Li et al., ICLR 2023): gradient signal-to-noise over minibatches -- SiGeo's first term.

For parameter tensors theta_m and per-minibatch gradients g_b (b = 1..n, n >= 2), each tensor in
scope gives::

    S_m = sum_{w in theta_m, sigma_w > 0} mean_b |g_{b,w}| / sigma_w,
    sigma_w = std_b g_{b,w}   (population std, ddof = 0)

and the tensors that contribute (those with S_m > 0) are reduced to one score::

    reduce = "sum"        ZiCo = sum_m log S_m                          (default; the paper's Eq.)
    reduce = "mean"       ZiCo = (sum_m log S_m) / M                    M = contributing tensors
    reduce = "per_layer"  ZiCo = (sum_m log S_m) / L                    L = contributing layers

Coordinates whose gradient is identical on every minibatch (sigma = 0, e.g. always zero) are
excluded -- tested by exact equality across minibatches, so rounding cannot turn a constant into a
tiny nonzero std; a tensor with no varying coordinate contributes nothing (as in ZiCo's code).
Ratios are computed in the gradients' precision (two-pass std) and summed in float64. A score with
no contributing tensor is 0.0 under every reduction.

Options (issue 18's variants; the defaults keep the scores of earlier releases bit for bit):

- ``scope``: which tensors enter. ``"all"`` (default): *every* parameter tensor (weights, biases,
  LayerNorm affines; with ``embeddings="rows"`` also the looked-up table rows), gradients keyed by
  parameter name. ``"linear"``: the official ZiCo code's scope -- the ``weight`` of every
  ``nn.Linear`` / ``nn.Conv2d`` and nothing else (no biases, no norms, no embeddings). recnas's ops
  hold raw parameters and call ``F.linear`` instead of ``nn.Linear`` modules, so the scope is taken
  from the tensors' shapes: a tensor with two or more dimensions is a linear map's weight matrix (in
  recnas's dense part every such tensor is; biases and LayerNorm affines are 1-D), and embedding
  rows (``embedding_rows.<feature>``) are left out.
- ``reduce``: ``"sum"`` (default, the paper and the code) grows with the number of tensors, so it
  ranks larger architectures higher whatever they learn (``reports/bench_*/diagnose``: Kendall +0.89
  with the tensor count). ``"mean"`` divides by the contributing tensors; ``"per_layer"`` divides by
  the contributing *layers*: the modules that directly hold the tensors (the parameter name up to
  its last dot; in recnas's dense part a layer is one op of a choice block with its linear maps and
  LayerNorms, or the head; each feature's embedding rows are a layer of their own).

How the default differs from the official code: all tensors rather than linear weights (``scope``),
and all coordinates with nonzero std -- the SiGeo public code keeps only the first (see
``recnas.estimators.sigeo``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import torch

from recnas.estimators._autograd import EMB_PREFIX, EMBEDDING_MODES, batch_gradients
from recnas.estimators.base import Estimator

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["ZICO_SCOPES", "ZICO_REDUCES", "zico_term", "zico_tensor_logs", "zico_reduce", "check_zico_options",
           "ZiCo"]

ZICO_SCOPES = ("all", "linear")
ZICO_REDUCES = ("sum", "mean", "per_layer")


#: Coordinates per block of :func:`_snr`: the ~9 block-sized operands (4 minibatches' gradients,
#: sums, scratch) stay in a core's L2 cache, so the ~30 element-wise operations read main memory
#: about once instead of once each.
SNR_CHUNK = 1 << 15


def _snr(gs: list[torch.Tensor], chunk: int = SNR_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Per coordinate: (varies across minibatches, mean|g| / std) for flat per-minibatch gradients.

    "std = 0" holds exactly when every minibatch has the same value, so it is tested by equality:
    rounding in the mean (n not a power of two) cannot turn a constant into a tiny std. Computed as
    running sums over minibatches (contiguous vector ops; a reduction over a stacked (n, numel)
    tensor's short axis is far slower on CPU), block by block of ``chunk`` coordinates (the same
    element-wise operations, so the same values, with the block's operands in cache).
    """
    numel = gs[0].numel()
    if numel <= chunk:
        return _snr_block(gs)
    keep = torch.empty(numel, dtype=torch.bool, device=gs[0].device)
    ratio = torch.empty(numel, dtype=gs[0].dtype, device=gs[0].device)
    for start in range(0, numel, chunk):
        k, r = _snr_block([g[start : start + chunk] for g in gs])
        keep[start : start + chunk] = k
        ratio[start : start + chunk] = r
    return keep, ratio


def _snr_block(gs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(gs)
    # The same element-wise operations in the same order as summing from zeros (0 + x == x; a -0 that
    # becomes +0 only ever reaches (g - mean)^2 and |g|), with two scratch buffers instead of a new
    # tensor per operation.
    g0 = gs[0]
    keep = torch.zeros_like(g0, dtype=torch.bool)
    flag = torch.empty_like(keep)
    scratch = torch.empty_like(g0)
    mean = g0.clone()
    mean_abs = torch.abs(g0)
    for g in gs[1:]:
        keep |= torch.ne(g, g0, out=flag)
        mean += g
        mean_abs += torch.abs(g, out=scratch)
    mean /= n
    mean_abs /= n
    var = torch.sub(g0, mean).square_()
    for g in gs[1:]:
        var += torch.sub(g, mean, out=scratch).square_()
    std = var.div_(n).sqrt_()
    # Coordinates that differ across minibatches can still have a std (or mean) that underflows to
    # 0 in float32; they carry no usable ratio, so they are excluded like constant coordinates.
    keep &= std > 0
    return keep, mean_abs.div_(torch.where(keep, std, 1.0))


def check_zico_options(scope: str, reduce: str, who: str = "zico") -> None:
    """Raises a one-line ``ValueError`` naming the option for an unknown ``scope`` / ``reduce``."""
    if scope not in ZICO_SCOPES:
        raise ValueError(f"{who} scope: expected one of {list(ZICO_SCOPES)}, got {scope!r}")
    if reduce not in ZICO_REDUCES:
        raise ValueError(f"{who} reduce: expected one of {list(ZICO_REDUCES)}, got {reduce!r}")


def _in_scope(name: str, shape: tuple[int, ...], scope: str) -> bool:
    if scope == "all":
        return True
    return len(shape) >= 2 and not name.startswith(EMB_PREFIX)


def _layer(name: str) -> str:
    """The layer a tensor belongs to: the module path of a parameter, the tensor itself for rows."""
    return name if name.startswith(EMB_PREFIX) else name.rpartition(".")[0]


def zico_tensor_logs(grads: Sequence[Mapping[str, torch.Tensor]], scope: str = "all") -> list[tuple[str, float]]:
    """``(tensor name, log S_m)`` of every tensor in ``scope`` that contributes, in the gradients'
    order (see the module docstring). The same checks as :func:`zico_term`."""
    if len(grads) < 2:
        raise ValueError(f"ZiCo needs gradients from at least 2 minibatches, got {len(grads)}")
    if scope not in ZICO_SCOPES:
        raise ValueError(f"zico scope: expected one of {list(ZICO_SCOPES)}, got {scope!r}")
    names = list(grads[0])
    for i, g in enumerate(grads[1:], start=1):
        if list(g) != names:
            diff = sorted(set(g) ^ set(names))
            raise ValueError(f"minibatch {i}: gradient names differ from minibatch 0: {diff}")
    out: list[tuple[str, float]] = []
    for name in names:
        shapes = {tuple(g[name].shape) for g in grads}
        if len(shapes) != 1:
            raise ValueError(f"gradient {name!r}: shapes differ across minibatches: {sorted(shapes)}")
        if not _in_scope(name, next(iter(shapes)), scope):
            continue
        keep, ratio = _snr([g[name].reshape(-1) for g in grads])
        if not bool(keep.any()):
            continue
        tensor_sum = float(torch.where(keep, ratio, 0.0).sum(dtype=torch.float64))
        if tensor_sum > 0.0:  # as ZiCo: a tensor whose ratios are all 0 adds nothing (not log 0)
            out.append((name, math.log(tensor_sum)))
    return out


def zico_reduce(logs: Sequence[tuple[str, float]], reduce: str = "sum") -> float:
    """``logs`` (from :func:`zico_tensor_logs`) reduced to the score: their sum, or the sum divided by
    the number of tensors (``"mean"``) or of distinct layers (``"per_layer"``); 0.0 if empty."""
    if reduce not in ZICO_REDUCES:
        raise ValueError(f"zico reduce: expected one of {list(ZICO_REDUCES)}, got {reduce!r}")
    total = 0.0
    for _, v in logs:  # left to right, as the sum always was (a compensated sum would change bits)
        total += v
    if not logs or reduce == "sum":
        return total
    if reduce == "mean":
        return total / len(logs)
    return total / len({_layer(n) for n, _ in logs})


def zico_term(grads: Sequence[Mapping[str, torch.Tensor]], scope: str = "all", reduce: str = "sum") -> float:
    """The ZiCo score of per-minibatch gradients (see the module docstring).

    Args:
        grads: one mapping per minibatch, tensor name -> gradient; the same names and shapes in
            every minibatch.
        scope: ``"all"`` tensors or the ``"linear"`` weights only.
        reduce: ``"sum"``, ``"mean"`` (per contributing tensor) or ``"per_layer"``.

    Returns:
        The score (0.0 if no tensor in scope has a coordinate with nonzero std).
    """
    if reduce not in ZICO_REDUCES:
        raise ValueError(f"zico reduce: expected one of {list(ZICO_REDUCES)}, got {reduce!r}")
    return zico_reduce(zico_tensor_logs(grads, scope), reduce)


class ZiCo(Estimator):
    """ZiCo at the candidate's weights over all of ``ctx.batches`` (>= 2).

    Args:
        embeddings: ``"none"`` (dense part only) or ``"rows"`` (also the table rows the batches
            look up, one tensor per feature; see ``SiGeo``). Not with ``scope="linear"``, which
            leaves the rows out.
        scope: ``"all"`` (default: every tensor) or ``"linear"`` (the official ZiCo scope: linear
            weight matrices only). See the module docstring.
        reduce: ``"sum"`` (default), ``"mean"`` (per contributing tensor) or ``"per_layer"``
            (per contributing layer). See the module docstring.
    """

    name = "zico"
    #: options added after scores were first stored: at these values they stay out of identities
    later_params = {"scope": "all", "reduce": "sum"}

    def __init__(self, embeddings: Literal["none", "rows"] = "none", scope: Literal["all", "linear"] = "all",
                 reduce: Literal["sum", "mean", "per_layer"] = "sum") -> None:
        self.embeddings = embeddings
        self.scope = scope
        self.reduce = reduce

    def check_params(self) -> None:
        if self.embeddings not in EMBEDDING_MODES:
            raise ValueError(f"zico embeddings: expected one of {list(EMBEDDING_MODES)}, got {self.embeddings!r}")
        check_zico_options(self.scope, self.reduce)
        if self.scope == "linear" and self.embeddings == "rows":
            raise ValueError("zico: scope='linear' leaves the embedding rows out, so embeddings='rows' would "
                             "change nothing; use embeddings='none'")

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        self.check_params()
        cand = ctx.candidate(spec)
        bgs = batch_gradients(cand.module, cand.batches, self.embeddings, cand.feature_names)
        return zico_term([bg.grads for bg in bgs], self.scope, self.reduce)
