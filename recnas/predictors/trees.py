"""Tree ensembles on a featurizer (one-hot by default): random forest and gradient-boosted trees.

WeakNAS lists both as alternatives to its MLP weak predictor; White et al. (NeurIPS 2021) find
boosted trees among the best predictors once a few hundred architectures are measured. Both are the
scikit-learn models on z-scored targets; ``seed`` makes them deterministic.

Example::

    >>> import numpy as np
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    >>> y = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> rf = make_estimator("rf", n_estimators=20).fit(specs, y, space=space)
    >>> rf.predict(specs[:3]).shape, rf.predict_std(specs[:3]).shape
    ((3,), (3,))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recnas.predictors.base import Predictor, as_matrix

__all__ = ["RandomForest", "GradientBoosting"]


class RandomForest(Predictor):
    """scikit-learn ``RandomForestRegressor``; ``predict_std`` is the spread over its trees.

    Args:
        n_estimators: number of trees.
        max_features: features tried per split (scikit-learn's ``max_features``: a fraction, an
            int, ``"sqrt"``, ``"log2"`` or None for all).
        min_samples_leaf: fewest architectures per leaf.
        max_depth: deepest a tree may grow (None: until the leaves are pure or minimal).
        seed: random seed (bootstrap samples and split features).
        featurizer: ``onehot``, ``graph`` or ``tokens`` (:mod:`recnas.space.features`), flattened.
        space: the search space (name or file) when ``fit`` is not given one.
    """

    name = "rf"
    provides_std = True

    def __init__(
        self,
        n_estimators: int = 200,
        max_features: Any = 1.0 / 3.0,
        min_samples_leaf: int = 1,
        max_depth: int | None = None,
        seed: int = 0,
        featurizer: str = "onehot",
        space: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.max_depth = max_depth
        self.seed = seed
        self.featurizer = featurizer
        self.space = space

    def _fit(self, X: Any, y: np.ndarray) -> None:
        from sklearn.ensemble import RandomForestRegressor

        self.model_ = RandomForestRegressor(
            n_estimators=self.n_estimators,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            max_depth=self.max_depth,
            random_state=self.seed,
        ).fit(as_matrix(X), self._standardise(y))

    def _predict(self, X: Any) -> np.ndarray:
        return self._unstandardise(self.model_.predict(as_matrix(X)))

    def _predict_std(self, X: Any) -> np.ndarray:
        M = as_matrix(X)
        per_tree = np.stack([t.predict(M) for t in self.model_.estimators_])
        return per_tree.std(axis=0) * self.y_std_


class GradientBoosting(Predictor):
    """scikit-learn ``GradientBoostingRegressor`` (squared error).

    Args:
        n_estimators: boosting stages.
        learning_rate: shrinkage of each stage.
        max_depth: depth of each tree.
        subsample: fraction of the architectures each stage sees (< 1: stochastic boosting).
        min_samples_leaf: fewest architectures per leaf.
        seed: random seed (subsamples and split ties).
        featurizer: ``onehot``, ``graph`` or ``tokens`` (:mod:`recnas.space.features`), flattened.
        space: the search space (name or file) when ``fit`` is not given one.
    """

    name = "gbt"

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        subsample: float = 1.0,
        min_samples_leaf: int = 1,
        seed: int = 0,
        featurizer: str = "onehot",
        space: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed
        self.featurizer = featurizer
        self.space = space

    def _fit(self, X: Any, y: np.ndarray) -> None:
        from sklearn.ensemble import GradientBoostingRegressor

        self.model_ = GradientBoostingRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.seed,
        ).fit(as_matrix(X), self._standardise(y))

    def _predict(self, X: Any) -> np.ndarray:
        return self._unstandardise(self.model_.predict(as_matrix(X)))
