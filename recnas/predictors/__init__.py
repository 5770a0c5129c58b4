"""recnas.predictors: estimators that learn from measured architectures (``needs_fit``).

=============  ==============================================================  =====================
name           what                                                            module
=============  ==============================================================  =====================
``ridge``      ridge regression on the one-hot encoding                        ``linear``
``rf``         random forest (``predict_std``: spread over the trees)          ``trees``
``gbt``        gradient-boosted trees                                          ``trees``
``mlp``        MLP, WeakNAS's weak predictor (4 x 1000 ReLU units by default)  ``mlp``
``emprox``     EmProx: kNN over a sequence autoencoder's embeddings            ``emprox``
``bonas``      BONAS: GCN embedding + Bayesian linear regression (``std``)     ``bonas``
``zc_gbt``     gradient-boosted trees on zero-cost proxy scores (+ one-hot)    ``zc``
=============  ==============================================================  =====================

``ridge``, ``rf``, ``gbt`` and ``mlp`` are scikit-learn models on z-scored targets; ``rf``, ``gbt``
and ``mlp`` take a ``featurizer`` (``onehot`` by default, or ``graph`` / ``tokens`` flattened, see
:mod:`recnas.space.features`) and a ``seed``. ``emprox`` (torch) reads the ``tokens`` view and
trains its autoencoder once per space (cached on disk). ``bonas`` (torch) reads the ``graph`` view
and gives ``predict_std`` and BONAS's ``ucb``. ``zc_gbt`` reads label-free proxy scores by architecture
key from a :class:`ProxyTable` (``scores=``; the bench hands over its own) and appends the one-hot
encoding unless ``onehot=False``. Every predictor is also a registered
estimator: ``make_estimator("ridge", alpha=1.0)``.
"""

from recnas.predictors.base import Predictor, as_matrix
from recnas.predictors.bonas import BONAS
from recnas.predictors.emprox import EmProx
from recnas.predictors.linear import Ridge
from recnas.predictors.mlp import MLP, WEAKNAS_HIDDEN
from recnas.predictors.trees import GradientBoosting, RandomForest
from recnas.predictors.zc import ProxyTable, ZeroCostGBT

__all__ = ["Predictor", "as_matrix", "BONAS", "EmProx", "Ridge", "RandomForest", "GradientBoosting", "MLP", "WEAKNAS_HIDDEN",
           "ProxyTable", "ZeroCostGBT"]
