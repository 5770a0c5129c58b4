"""The predictor interface: learn an architecture's quality from measured architectures.

A predictor is an :class:`~recnas.estimators.Estimator` with ``needs_fit = True``: the same
scikit-learn parameter contract and registry (``make_estimator(name, **params)``), plus

* ``fit(specs, y, space=None) -> self``: ``y`` is "higher = better" (e.g. minus the test log loss);
* ``predict(specs) -> (n,)`` and, where the model has one (``provides_std = True``),
  ``predict_std(specs) -> (n,)``, the model's spread of its prediction in the units of ``y``;
  other predictors raise ``NotImplementedError`` naming the ones that have it;
* ``score(specs, ctx) = predict(specs)``, so a fitted predictor ranks like any other estimator.

The search space the featurizer needs is ``space`` of ``fit`` (else the ``space`` parameter, a
shipped space's name or file). Learned state ends in ``_``; ``is_fitted_`` is set by ``fit``.

Subclasses implement ``_fit(X, y)`` and ``_predict(X)`` (and ``_predict_std(X)``) on the featurized
arrays (``featurizer``: ``onehot``, ``graph`` or ``tokens``, see :mod:`recnas.space.features`);
:func:`as_matrix` flattens any of them to one row per architecture for tabular models, and
``_standardise`` / ``_unstandardise`` z-score the targets (so penalties and learning rates do not
depend on the scale of ``y``).

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
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from recnas.estimators.base import Estimator
from recnas.space.features import FEATURIZERS, featurize

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.space import SearchSpace
    from recnas.space.spec import ArchSpec

__all__ = ["Predictor", "as_matrix"]


def as_matrix(features: Any) -> np.ndarray:
    """One float64 row per architecture: an array is reshaped to ``(n, -1)``; a tuple of arrays (the
    graph view's adjacency and node features) is flattened and concatenated column-wise.

    >>> import numpy as np
    >>> as_matrix((np.zeros((2, 3, 3)), np.ones((2, 3, 4)))).shape
    (2, 21)
    """
    parts = features if isinstance(features, tuple) else (features,)
    n = len(parts[0])
    cols = [np.asarray(p, dtype=np.float64) for p in parts]
    return np.concatenate([c.reshape(n, int(np.prod(c.shape[1:]))) for c in cols], axis=1)


class Predictor(Estimator):
    """Base class of the predictors (see the module docstring)."""

    needs_fit = True
    needs_weights = False
    #: the featurizer when the predictor has no ``featurizer`` parameter.
    featurizer_kind: ClassVar[str] = "onehot"
    #: whether ``predict_std`` is implemented.
    provides_std: ClassVar[bool] = False

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

    def _featurizer(self) -> str:
        kind = getattr(self, "featurizer", self.featurizer_kind)
        if kind not in FEATURIZERS:
            raise ValueError(
                f"predictor {self.name!r}: unknown featurizer {kind!r}; known featurizers are {sorted(FEATURIZERS)}"
            )
        return kind

    def features(self, specs: Sequence[ArchSpec], space: SearchSpace | None = None) -> Any:
        """The featurized ``specs`` this predictor fits on and predicts from."""
        return featurize(self._featurizer(), self._space(space), list(specs))

    def fit(self, specs: Sequence[ArchSpec], y: Sequence[float], space: SearchSpace | None = None) -> Predictor:
        """Fits on measured architectures; ``y`` higher = better. Returns ``self``."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(specs) != y.shape[0]:
            raise ValueError(f"predictor {self.name!r}: {len(specs)} architectures but {y.shape[0]} targets")
        if len(specs) < 2:
            raise ValueError(
                f"predictor {self.name!r}: at least 2 measured architectures are needed to fit, got {len(specs)}"
            )
        if not np.isfinite(y).all():
            raise ValueError(f"predictor {self.name!r}: {int((~np.isfinite(y)).sum())} targets are not finite")
        self._featurizer()
        self.space_ = self._space(space)
        self._fit(self.features(specs), y)
        self.is_fitted_ = True
        return self

    def _check_fitted(self, what: str) -> None:
        if not getattr(self, "is_fitted_", False):
            raise RuntimeError(f"predictor {self.name!r} must be fit before it can {what}")

    def predict(self, specs: Sequence[ArchSpec]) -> np.ndarray:
        """``(n,)`` float64 predictions (higher = better)."""
        self._check_fitted("predict")
        if not specs:
            return np.zeros(0)
        return np.asarray(self._predict(self.features(specs)), dtype=np.float64).reshape(len(specs))

    def predict_std(self, specs: Sequence[ArchSpec]) -> np.ndarray:
        """``(n,)`` float64 spread of the predictions, in the units of ``y`` (only where ``provides_std``)."""
        if not self.provides_std:
            from recnas.estimators.base import ESTIMATORS

            having = sorted(n for n, c in ESTIMATORS.items() if getattr(c, "provides_std", False))
            raise NotImplementedError(
                f"predictor {self.name!r} gives no predictive std (predict_std); predictors that do: {having}"
            )
        self._check_fitted("predict_std")
        if not specs:
            return np.zeros(0)
        return np.asarray(self._predict_std(self.features(specs)), dtype=np.float64).reshape(len(specs))

    def score(self, specs: Sequence[ArchSpec], ctx: ScoringContext | None = None) -> np.ndarray:
        return self.predict(specs)

    def _fit(self, X: Any, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _predict_std(self, X: Any) -> np.ndarray:
        raise NotImplementedError

    def _standardise(self, y: np.ndarray) -> np.ndarray:
        """Stores ``y_mean_`` / ``y_std_`` (1 for constant targets) and returns the z-scored ``y``."""
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        return (y - self.y_mean_) / self.y_std_

    def _unstandardise(self, z: np.ndarray) -> np.ndarray:
        """Back to the units of ``y``."""
        return z * self.y_std_ + self.y_mean_
