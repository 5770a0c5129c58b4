"""Multi-layer perceptron on a featurizer (one-hot by default): WeakNAS's weak predictor.

WeakNAS fits an MLP of 4 hidden layers of 1000 units on the z-scored accuracies of the sampled
architectures, refitting it from scratch every round. This is scikit-learn's ``MLPRegressor`` (ReLU,
Adam) on z-scored targets, trained for ``max_iter`` epochs (a fixed budget: the convergence
warning scikit-learn gives when it is reached is silenced); ``seed`` fixes initialisation and
minibatch order, so the same seed gives the same predictions.

Example::

    >>> import numpy as np
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(20)]
    >>> y = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> mlp = make_estimator("mlp", hidden_layer_sizes=(32, 32), max_iter=50).fit(specs, y, space=space)
    >>> mlp.predict(specs[:3]).shape
    (3,)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from recnas.predictors.base import Predictor, as_matrix

__all__ = ["MLP", "WEAKNAS_HIDDEN"]

#: WeakNAS's MLP: 4 hidden layers of 1000 units.
WEAKNAS_HIDDEN: tuple[int, ...] = (1000, 1000, 1000, 1000)


class MLP(Predictor):
    """scikit-learn ``MLPRegressor`` (ReLU, Adam) on z-scored targets.

    Args:
        hidden_layer_sizes: units of each hidden layer (default WeakNAS's ``(1000, 1000, 1000, 1000)``).
        alpha: L2 penalty.
        learning_rate_init: Adam's learning rate.
        batch_size: minibatch size (``"auto"``: ``min(200, n)``).
        max_iter: training epochs (a fixed budget; training may stop earlier when the loss stalls).
        seed: random seed (initial weights, minibatch order).
        featurizer: ``onehot``, ``graph`` or ``tokens`` (:mod:`recnas.space.features`), flattened.
        space: the search space (name or file) when ``fit`` is not given one.
    """

    name = "mlp"

    def __init__(
        self,
        hidden_layer_sizes: tuple[int, ...] = WEAKNAS_HIDDEN,
        alpha: float = 1e-4,
        learning_rate_init: float = 1e-3,
        batch_size: Any = "auto",
        max_iter: int = 200,
        seed: int = 0,
        featurizer: str = "onehot",
        space: Any = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.seed = seed
        self.featurizer = featurizer
        self.space = space

    def _fit(self, X: Any, y: np.ndarray) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        model = MLPRegressor(
            hidden_layer_sizes=tuple(self.hidden_layer_sizes),
            alpha=self.alpha,
            learning_rate_init=self.learning_rate_init,
            batch_size=self.batch_size,
            max_iter=self.max_iter,
            random_state=self.seed,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            self.model_ = model.fit(as_matrix(X), self._standardise(y))

    def _predict(self, X: Any) -> np.ndarray:
        return self._unstandardise(self.model_.predict(as_matrix(X)))
