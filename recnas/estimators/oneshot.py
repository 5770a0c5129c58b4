"""The one-shot score: validation log loss of the candidate with weights inherited from the supernet.

``oneshot = -(sum over val_batches of BCE) / rows`` (negated: higher = better). No fine-tuning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from recnas.estimators.base import Estimator

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["OneShot"]


class OneShot(Estimator):
    """Negated validation log loss at inherited weights (needs a supernet and ``val_batches``)."""

    name = "oneshot"
    needs_supernet = True

    def __init__(self) -> None:
        pass

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        if not ctx.val_batches:
            raise ValueError("estimator 'oneshot' needs validation batches (ScoringContext.val_batches)")
        cand = ctx.candidate(spec, which="val")
        total, rows = 0.0, 0
        with torch.no_grad():
            for cb in cand.batches:
                logits = cand.module(cb.dense, cb.emb).reshape(-1)
                total += float(F.binary_cross_entropy_with_logits(logits, cb.labels, reduction="sum"))
                rows += cb.batch_size
        return -total / rows
