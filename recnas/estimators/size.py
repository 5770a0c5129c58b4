"""Size proxies: parameter count and FLOPs per example, as the model itself counts them.

Both build the candidate's ``CTRModel`` on the ``meta`` device (no memory, no data) and read
``num_params()`` / ``flops_per_example()``; they ignore weights, so ``init`` does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from recnas.estimators.base import Estimator

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["Params", "Flops"]


def _meta_model(spec: ArchSpec, ctx: ScoringContext):  # -> CTRModel
    from recnas.models import CTRModel

    return CTRModel(ctx.feature_map, spec, device=torch.device("meta"))


class Params(Estimator):
    """Number of parameters (more = predicted better).

    Args:
        include_embeddings: count the embedding tables too (they only differ between candidates
            of different ``embedding_dim``).
    """

    name = "params"
    needs_weights = False

    def __init__(self, include_embeddings: bool = True) -> None:
        self.include_embeddings = include_embeddings

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        return float(_meta_model(spec, ctx).num_params(include_embeddings=self.include_embeddings))


class Flops(Estimator):
    """FLOPs of one example's forward pass, ``CTRModel.flops_per_example()`` (more = predicted better)."""

    name = "flops"
    needs_weights = False

    def __init__(self) -> None:
        pass

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        return float(_meta_model(spec, ctx).flops_per_example())
