"""The predictor interface: learn an architecture's quality from measured architectures.

A predictor is an :class:`~recnas.estimators.Estimator` with ``needs_fit = True``: the same
scikit-learn parameter contract and registry (``make_estimator(name, **params)``), plus

* ``fit(specs, y, space=None) -> self``: ``y`` is "higher = better" (e.g. minus the test log loss);
* ``predict(specs) -> (n,)`` and, where the model has one, ``predict_std(specs) -> (n,)``;
* ``score(specs, ctx) = predict(specs)``, so a fitted predictor ranks like any other estimator.

The search space the featurizer needs is ``space`` of ``fit`` (else the ``space`` parameter, a
shipped space's name or file). Learned state ends in ``_``; ``is_fitted_`` is set by ``fit``.

Subclasses implement ``_fit(X, y)`` and ``_predict(X)`` on the featurized arrays
(``featurizer``: ``onehot``, ``graph`` or ``tokens``, see :mod:`recnas.space.features`).

Example::

    >>> import numpy as np
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    >>> y = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> p = make_estimator("ridge").fit(specs, y, space=space)
    >>> p.predict(specs[:2]).shape
    (2,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recnas.estimators.base import Estimator
from recnas.space.features import featurize

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.space import SearchSpace
    from recnas.space.spec import ArchSpec

__all__ = ["Predictor"]


class Predictor(Estimator):
    """Base class of the predictors (see the module docstring)."""

    needs_fit = True
    needs_weights = False
    featurizer_kind: str = "onehot"

    def _space(self, space: SearchSpace | None) -> SearchSpace:
        from recnas.space.space import SearchSpace

        if space is not None:
            return space
        fitted = getattr(self, "space_", None)
        if fitted is not None:
            return fitted
        named = getattr(self, "space", None)
        if named is None:
            raise ValueError(f"predictor {self.name!r}: no search space (pass space= to fit, or the space parameter)")
        return named if isinstance(named, SearchSpace) else SearchSpace.load(named)

    def features(self, specs: Sequence[ArchSpec], space: SearchSpace | None = None) -> Any:
        return featurize(getattr(self, "featurizer", self.featurizer_kind), self._space(space), list(specs))

    def fit(self, specs: Sequence[ArchSpec], y: Sequence[float], space: SearchSpace | None = None) -> Predictor:
        """Fits on measured architectures; ``y`` higher = better. Returns ``self``."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(specs) != y.shape[0]:
            raise ValueError(f"predictor {self.name!r}: {len(specs)} architectures but {y.shape[0]} targets")
        if len(specs) < 2:
            raise ValueError(f"predictor {self.name!r}: at least 2 measured architectures are needed to fit, got {len(specs)}")
        if not np.isfinite(y).all():
            raise ValueError(f"predictor {self.name!r}: {int((~np.isfinite(y)).sum())} targets are not finite")
        self.space_ = self._space(space)
        self._fit(self.features(specs), y)
        self.is_fitted_ = True
        return self

    def predict(self, specs: Sequence[ArchSpec]) -> np.ndarray:
        """``(n,)`` float64 predictions (higher = better)."""
        if not getattr(self, "is_fitted_", False):
            raise RuntimeError(f"predictor {self.name!r} must be fit before it can predict")
        if not specs:
            return np.zeros(0)
        return np.asarray(self._predict(self.features(specs)), dtype=np.float64).reshape(len(specs))

    def score(self, specs: Sequence[ArchSpec], ctx: ScoringContext | None = None) -> np.ndarray:
        return self.predict(specs)

    def _fit(self, X: Any, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: Any) -> np.ndarray:
        raise NotImplementedError
