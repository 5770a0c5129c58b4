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
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from recnas.estimators._autograd import BatchGradient, batch_gradients, trainable
from recnas.estimators.base import Estimator
from recnas.estimators.context import CandidateBatch
from recnas.estimators.zico import zico_term

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["SIGEO_PRESETS", "SIGEO_TERMS", "FISHER_RAO_FLOOR", "sigeo_terms", "SiGeo"]

#: Named (l1, l2, l3) settings. ``"paper"``: the paper's text for warm-up > 0; ``"public_criteo"`` /
#: ``"public_avazu"``: the public RecSys scripts (Criteo and KDD / Avazu); ``"zico"``: ZiCo alone.
SIGEO_PRESETS: dict[str, tuple[float, float, float]] = {
    "paper": (1.0, 50.0, 1.0),
    "public_criteo": (1.0, 1.0, 0.0),
    "public_avazu": (0.0, 1.0, 1.0),
    "zico": (1.0, 0.0, 0.0),
}
SIGEO_TERMS = ("zico", "fisher_rao", "loss")
FISHER_RAO_FLOOR = float(np.finfo(np.float64).tiny)


def sigeo_terms(bgs: Sequence[BatchGradient]) -> dict[str, float]:
    """The three raw terms from per-minibatch gradients.

    Returns:
        ``{"zico": ..., "fisher_rao": log(max(mean_b (theta . g_b)^2, FISHER_RAO_FLOOR)),
        "loss": mean_b L_b}``; the score is ``l1 * zico + l2 * fisher_rao - l3 * loss``.
    """
    tdg = np.array([bg.theta_dot_g for bg in bgs], dtype=np.float64)
    return {
        "zico": zico_term([bg.grads for bg in bgs]),
        "fisher_rao": math.log(max(float(np.mean(tdg**2)), FISHER_RAO_FLOOR)),
        "loss": float(np.mean([bg.loss for bg in bgs])),
    }


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
) -> list[BatchGradient]:
    private = copy.deepcopy(module)
    named = trainable(private)
    opt = torch.optim.Adagrad([p for _, p in named], lr=lr)

    def step(grads: dict[str, torch.Tensor]) -> None:
        for n, p in named:
            p.grad = grads[n].clone()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seq = [batches[i % len(batches)] for i in range(steps)]
    return batch_gradients(private, seq, embeddings, feature_names, after_batch=step)


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
    """

    name = "sigeo"

    def __init__(
        self,
        weights: str | tuple[float, float, float] = "paper",
        embeddings: Literal["none", "rows"] = "none",
        local_steps: int = 0,
        local_lr: float = 0.04,
    ) -> None:
        self.weights = weights
        self.embeddings = embeddings
        self.local_steps = local_steps
        self.local_lr = local_lr

    def terms_spec(self, spec: ArchSpec, ctx: ScoringContext) -> dict[str, float]:
        """The three raw terms of one architecture (see :func:`sigeo_terms`)."""
        if self.local_steps < 0 or self.local_steps == 1:
            raise ValueError(f"sigeo local_steps: expected 0 or >= 2, got {self.local_steps}")
        cand = ctx.candidate(spec)
        if self.local_steps:
            bgs = _local_step_gradients(
                cand.module, cand.batches, self.local_steps, self.local_lr, self.embeddings,
                cand.feature_names,
            )
        else:
            bgs = batch_gradients(cand.module, cand.batches, self.embeddings, cand.feature_names)
        return sigeo_terms(bgs)

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
        _resolve_weights(self.weights)  # fail before any work
        return self.combine(self.terms(specs, ctx), self.weights)

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        return float(self.score([spec], ctx)[0])
