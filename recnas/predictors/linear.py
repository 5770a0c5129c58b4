"""Ridge regression on the one-hot encoding: the simplest predictor, and a baseline for the others."""

from __future__ import annotations

from typing import Any

import numpy as np

from recnas.predictors.base import Predictor

__all__ = ["Ridge"]


class Ridge(Predictor):
    """scikit-learn ``Ridge`` on the one-hot encoding (targets standardised, so ``alpha`` is scale-free).

    Args:
        alpha: L2 penalty.
        space: the search space (name or file) when ``fit`` is not given one.
    """

    name = "ridge"

    def __init__(self, alpha: float = 1.0, space: Any = None) -> None:
        self.alpha = alpha
        self.space = space

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import Ridge as SkRidge

        self.model_ = SkRidge(alpha=self.alpha).fit(X, self._standardise(y))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._unstandardise(self.model_.predict(X))
