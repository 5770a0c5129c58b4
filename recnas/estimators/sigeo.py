"""SiGeo (Zheng et al., arXiv 2311.13169, Eq. 7): ZiCo + Fisher-Rao norm - training loss.

For a candidate with parameter tensors theta_m and per-minibatch gradients g_b, b = 1..n::

    SiGeo = l1 * ZiCo                                  (see recnas.estimators.zico)
          + l2 * log( mean_b (theta . g_b)^2 )         Fisher-Rao norm, theta^T F theta with the
                                                       empirical Fisher from the n gradients
          - l3 * mean_b L_b                            mean training loss

Gradients are taken at the candidate's (inherited or fresh) weights, one per minibatch of
``ctx.batches``, with no optimizer step -- that keeps the supernet untouched and matches ZiCo.
``local_steps = k >= 2`` instead runs k plain Adagrad steps on a *private copy* (constant lr
``local_lr``, default 0.04; torch's default eps 1e-10; no gradient clipping; batch b = step mod n)
and takes each step's gradient at the weights before that step's update; theta . g_b uses those
same weights, and the loss term is the mean of the k steps' losses. (Embedding rows are not
updated by those steps.)

How that differs from the public SiGeo code (``nasrec/eval_subnet_from_supernet.py`` with
``--zeroshot zico-fr`` and ``nasrec/utils/train_utils.py``, as its run scripts call it:
``--learning_rate 0.04 --max_train_steps 500 --finetune_whole_supernet 0``). The public code takes
4 steps of Adagrad with eps 1e-2 under a cosine schedule with linear warm-up from 1e-8 over
``max_train_steps // 10`` = 50 steps, so the four steps run at lr 1e-8, 1e-8, 8e-4 and 1.6e-3 (0.04
is the schedule's peak, never reached in 4 steps); it clips each step's gradient to norm 5 before
the step and records the clipped gradient; its Fisher-Rao term is log(|theta_4 . sum_b g_b| + 1e-10)
with theta_4 the weights *after* the last step against the sum of the 4 gradients; its loss term is
the last step's loss alone; and with ``--finetune_whole_supernet 0`` the embedding tables and all
blocks are frozen, so only the final layer's parameters get gradients and enter the terms. recnas
does none of these: it keeps the constant ``local_lr``, torch's eps, no clipping, no frozen layer,
the per-step theta_b . g_b and the mean loss described above. The ``local_steps`` option is an
Adagrad-steps variant in the spirit of the public code, not a reproduction of it.

Also unlike the public code, in both modes: all coordinates of every tensor enter ZiCo (the public
code takes only the first coordinate with nonzero std), gradients are keyed by parameter name (not
``str(module)`` plus shape, which merges layers that print identically), std has ddof = 0 (torch's
default there is ddof = 1), and the Fisher-Rao term is log(mean_b (theta . g_b)^2) (not
log(|theta . sum_b g_b| + 1e-10)).

**log(0) guard.** ``mean_b (theta . g_b)^2`` is exactly 0 only when theta . g_b = 0 on every
minibatch (e.g. all weights zero, or no gradient reaches any weight); it is floored at the smallest
positive float64 (2.2e-308, log = -708.4) so such a candidate ranks last instead of giving -inf or
NaN (with l2 = 0, -inf * 0 would be NaN).

Embedding tables (``embeddings``): ``"none"`` scores the dense part only; ``"rows"`` also enters
the table rows the minibatches look up (one tensor per feature, gradients from ``d loss / d emb``
aggregated per unique id), without reading the possibly sharded tables.

**Variants (issue 18), each an option whose default keeps earlier scores bit for bit.**

- ``scope`` (``"all"`` | ``"linear"``) and ``reduce`` (``"sum"`` | ``"mean"`` | ``"per_layer"``)
  change the ZiCo term only, exactly as in :mod:`recnas.estimators.zico`: ``"linear"`` is the
  official ZiCo code's scope (linear weight matrices only; embedding rows never, even with
  ``embeddings="rows"``, which then still enter the Fisher-Rao term); ``"mean"`` / ``"per_layer"``
  divide the sum of per-tensor logs by the number of contributing tensors / layers, so the term no
  longer grows with the tensor count.
- ``loss_on``: ``"train"`` (default) is the mean loss of the gradient minibatches, as above.
  ``"heldout"`` is the mean loss over ``ctx.val_batches`` (held-out rows, the one-shot score's
  batches; each batch's mean BCE, then the mean over batches) at the weights the gradients were
  taken at -- or, with ``local_steps``, at the private copy's weights *after* the k steps (what the
  steps reached, on rows they did not see). With ``local_steps = 0`` and inherited weights,
  ``-loss`` is then the one-shot score (up to unequal batch sizes). Needs ``val_batches``.
- All of them compose with ``local_steps``: the ZiCo and Fisher-Rao terms are always taken from the
  same per-step gradients, whatever the options.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from recnas.estimators._autograd import EMBEDDING_MODES, BatchGradient, batch_gradients, bce_loss, trainable
from recnas.estimators.base import Estimator
from recnas.estimators.context import CandidateBatch
from recnas.estimators.zico import check_zico_options, zico_reduce, zico_tensor_logs

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["SIGEO_PRESETS", "SIGEO_TERMS", "SIGEO_LOSS_ON", "FISHER_RAO_FLOOR", "sigeo_terms", "heldout_loss",
           "shared_terms", "SiGeo"]

#: Named (l1, l2, l3) settings. ``"paper"``: the paper's text for warm-up > 0; ``"public_criteo"`` /
#: ``"public_avazu"``: the public RecSys scripts (Criteo and KDD / Avazu); ``"zico"``: ZiCo alone.
SIGEO_PRESETS: dict[str, tuple[float, float, float]] = {
    "paper": (1.0, 50.0, 1.0),
    "public_criteo": (1.0, 1.0, 0.0),
    "public_avazu": (0.0, 1.0, 1.0),
    "zico": (1.0, 0.0, 0.0),
}
SIGEO_TERMS = ("zico", "fisher_rao", "loss")
SIGEO_LOSS_ON = ("train", "heldout")
FISHER_RAO_FLOOR = float(np.finfo(np.float64).tiny)


def sigeo_terms(bgs: Sequence[BatchGradient], scope: str = "all", reduce: str = "sum",
                loss: float | None = None) -> dict[str, float]:
    """The three raw terms from per-minibatch gradients.

    Args:
        bgs: the per-minibatch gradients.
        scope, reduce: the ZiCo term's options (:func:`recnas.estimators.zico.zico_term`).
        loss: the loss term to use instead of the minibatches' mean loss (e.g. :func:`heldout_loss`).

    Returns:
        ``{"zico": ..., "fisher_rao": log(max(mean_b (theta . g_b)^2, FISHER_RAO_FLOOR)),
        "loss": mean_b L_b}``; the score is ``l1 * zico + l2 * fisher_rao - l3 * loss``.
    """
    tdg = np.array([bg.theta_dot_g for bg in bgs], dtype=np.float64)
    return {
        "zico": zico_reduce(zico_tensor_logs([bg.grads for bg in bgs], scope), reduce),
        "fisher_rao": math.log(max(float(np.mean(tdg**2)), FISHER_RAO_FLOOR)),
        "loss": float(np.mean([bg.loss for bg in bgs])) if loss is None else float(loss),
    }


def heldout_loss(module: nn.Module, batches: Sequence[CandidateBatch]) -> float:
    """Mean over ``batches`` of each batch's mean BCE at the module's current weights (no gradient)."""
    if not batches:
        raise ValueError("sigeo loss_on='heldout' needs validation batches (ScoringContext.val_batches is empty)")
    with torch.no_grad():
        return float(np.mean([float(bce_loss(module(cb.dense, cb.emb), cb.labels)) for cb in batches]))


def _resolve_weights(weights: str | Sequence[float]) -> tuple[float, float, float]:
    if isinstance(weights, str):
        if weights not in SIGEO_PRESETS:
            raise ValueError(
                f"sigeo weights: unknown preset {weights!r}; known presets are {sorted(SIGEO_PRESETS)} "
                "or give (l1, l2, l3)"
            )
        return SIGEO_PRESETS[weights]
    w = tuple(float(x) for x in weights)
    if len(w) != 3:
        raise ValueError(f"sigeo weights: expected (l1, l2, l3), got {weights!r}")
    return w  # type: ignore[return-value]


def _local_step_gradients(
    module: nn.Module,
    batches: Sequence[CandidateBatch],
    steps: int,
    lr: float,
    embeddings: Literal["none", "rows"],
    feature_names: Sequence[str],
) -> tuple[nn.Module, list[BatchGradient]]:
    """The k steps' gradients, and the private copy after its last step."""
    private = copy.deepcopy(module)
    named = trainable(private)
    opt = torch.optim.Adagrad([p for _, p in named], lr=lr)

    def step(grads: dict[str, torch.Tensor]) -> None:
        for n, p in named:
            p.grad = grads[n].clone()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seq = [batches[i % len(batches)] for i in range(steps)]
    return private, batch_gradients(private, seq, embeddings, feature_names, after_batch=step)


def shared_terms(estimators: Sequence[SiGeo], spec: ArchSpec, ctx: ScoringContext) -> list[dict[str, float]]:
    """The raw terms of one architecture for several SiGeo settings that take the same gradients
    (the same :meth:`SiGeo.gradient_key`: ``embeddings``, ``local_steps``, ``local_lr``) from one
    gradient pass -- each equal to that estimator's own :meth:`SiGeo.terms_spec`. The held-out loss
    is computed once if any of them needs it."""
    if not estimators:
        return []
    for est in estimators:
        est.check_params()
    key = estimators[0].gradient_key()
    other = [e.gradient_key() for e in estimators if e.gradient_key() != key]
    if other:
        raise ValueError(f"sigeo shared_terms: gradient settings differ ({key} vs {other[0]}); group by gradient_key()")
    emb, steps, lr = key
    cand = ctx.candidate(spec)
    if steps:
        module, bgs = _local_step_gradients(cand.module, cand.batches, steps, lr, emb, cand.feature_names)
    else:
        module, bgs = cand.module, batch_gradients(cand.module, cand.batches, emb, cand.feature_names)
    held = heldout_loss(module, ctx.inputs(spec, "val")) if any(e.loss_on == "heldout" for e in estimators) else None
    grads = [bg.grads for bg in bgs]
    logs = {scope: zico_tensor_logs(grads, scope) for scope in dict.fromkeys(e.scope for e in estimators)}
    tdg = np.array([bg.theta_dot_g for bg in bgs], dtype=np.float64)
    fisher_rao = math.log(max(float(np.mean(tdg**2)), FISHER_RAO_FLOOR))
    train_loss = float(np.mean([bg.loss for bg in bgs]))
    return [{"zico": zico_reduce(logs[e.scope], e.reduce), "fisher_rao": fisher_rao,
             "loss": held if e.loss_on == "heldout" else train_loss} for e in estimators]


class SiGeo(Estimator):
    """SiGeo at inherited (sub-one-shot) or fresh (zero-shot) weights.

    Args:
        weights: ``(l1, l2, l3)`` or a preset name from :data:`SIGEO_PRESETS`. The default,
            ``"paper"``, is provisional: the project's setting is to be chosen by measurement on the
            ground-truth benchmark (and reported there).
        embeddings: ``"none"`` | ``"rows"`` (see the module docstring).
        local_steps: 0 (default: gradients at the given weights over ``ctx.batches``) or k >= 2
            Adagrad steps on a private copy, taking each step's gradient (modelled on the public
            code's 4 fine-tuning steps, but not the same: see the module docstring).
        local_lr: constant Adagrad learning rate of those steps. 0.04 is the peak lr of the public
            code's schedule; its 4 steps actually run at 1e-8, 1e-8, 8e-4, 1.6e-3.
        scope: the ZiCo term's tensors: ``"all"`` (default) or ``"linear"`` (the official ZiCo
            scope, linear weight matrices only).
        reduce: the ZiCo term's reduction over tensors: ``"sum"`` (default), ``"mean"`` (per
            contributing tensor) or ``"per_layer"`` (per contributing layer).
        loss_on: the loss term's rows: ``"train"`` (default: the gradient minibatches) or
            ``"heldout"`` (``ctx.val_batches``, after the local steps if any).

    The options are the module docstring's "Variants"; the defaults are the scores of earlier
    releases, bit for bit.
    """

    name = "sigeo"
    #: options added after scores were first stored: at these values they stay out of identities
    later_params = {"scope": "all", "reduce": "sum", "loss_on": "train"}

    def __init__(
        self,
        weights: str | tuple[float, float, float] = "paper",
        embeddings: Literal["none", "rows"] = "none",
        local_steps: int = 0,
        local_lr: float = 0.04,
        scope: Literal["all", "linear"] = "all",
        reduce: Literal["sum", "mean", "per_layer"] = "sum",
        loss_on: Literal["train", "heldout"] = "train",
    ) -> None:
        self.weights = weights
        self.embeddings = embeddings
        self.local_steps = local_steps
        self.local_lr = local_lr
        self.scope = scope
        self.reduce = reduce
        self.loss_on = loss_on

    def check_params(self) -> None:
        """One-line ``ValueError`` naming the parameter for a value that is not allowed."""
        _resolve_weights(self.weights)
        if self.embeddings not in EMBEDDING_MODES:
            raise ValueError(f"sigeo embeddings: expected one of {list(EMBEDDING_MODES)}, got {self.embeddings!r}")
        if isinstance(self.local_steps, bool) or not isinstance(self.local_steps, numbers.Integral) or self.local_steps < 0 \
                or self.local_steps == 1:
            raise ValueError(f"sigeo local_steps: expected 0 or >= 2, got {self.local_steps!r}")
        if self.local_steps and not (isinstance(self.local_lr, numbers.Real) and self.local_lr > 0):
            raise ValueError(f"sigeo local_lr: expected a positive number, got {self.local_lr!r}")
        check_zico_options(self.scope, self.reduce, "sigeo")
        if self.loss_on not in SIGEO_LOSS_ON:
            raise ValueError(f"sigeo loss_on: expected one of {list(SIGEO_LOSS_ON)}, got {self.loss_on!r}")

    def gradient_key(self) -> tuple[str, int, float]:
        """What decides the gradients (``embeddings``, ``local_steps``, ``local_lr``): settings with
        the same key can share one gradient pass (:func:`shared_terms`)."""
        return (self.embeddings, int(self.local_steps), float(self.local_lr))

    def terms_spec(self, spec: ArchSpec, ctx: ScoringContext) -> dict[str, float]:
        """The three raw terms of one architecture (see :func:`sigeo_terms`)."""
        return shared_terms([self], spec, ctx)[0]

    def terms(self, specs: Sequence[ArchSpec], ctx: ScoringContext) -> np.ndarray:
        """``(len(specs), 3)`` raw terms, columns :data:`SIGEO_TERMS` -- for ablations, combine
        them with :meth:`combine` under any weights without recomputing gradients."""
        rows = [self.terms_spec(s, ctx) for s in specs]
        return np.array([[r[t] for t in SIGEO_TERMS] for r in rows], dtype=np.float64).reshape(-1, 3)

    @staticmethod
    def combine(terms: np.ndarray, weights: str | Sequence[float]) -> np.ndarray:
        """``l1 * zico + l2 * fisher_rao - l3 * loss`` for ``(n, 3)`` terms."""
        l1, l2, l3 = _resolve_weights(weights)
        t = np.asarray(terms, dtype=np.float64)
        return l1 * t[:, 0] + l2 * t[:, 1] - l3 * t[:, 2]

    def score(self, specs: Sequence[ArchSpec], ctx: ScoringContext) -> np.ndarray:
        self.check_params()  # fail before any work
        return self.combine(self.terms(specs, ctx), self.weights)

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        return float(self.score([spec], ctx)[0])
