"""recnas.estimators: rank candidate architectures cheaply (higher score = predicted lower log loss).

Every estimator follows one scikit-learn-style contract (:class:`Estimator`: parameters in
``__init__``, ``get_params`` / ``clone``, ``score(specs, ctx) -> (n,)``) and is registered by name:

=============  ==============================================================  =====================
name           what                                                            module
=============  ==============================================================  =====================
``sigeo``      ZiCo + Fisher-Rao norm - training loss (SiGeo, Eq. 7)          ``sigeo``
``zico``       gradient mean/std over minibatches (ZiCo)                       ``zico``
``oneshot``    validation log loss at inherited weights (option: tuned head)   ``oneshot``
``params``     parameter count                                                 ``size``
``flops``      FLOPs per example                                               ``size``
``grad_norm``  sum of gradient norms                                           ``saliency``
``snip``       sum of abs(theta * gradient)                                    ``saliency``
``synflow``    data-free synaptic flow                                         ``synflow``
``fisher``     activation Fisher information                                   ``fisher``
``naswot``     log det of the ReLU-code kernel                                 ``naswot``
``jacob_cov``  correlation of input Jacobians (input = embedding outputs)      ``jacob_cov``
``ridge``      predictor: ridge regression on the one-hot encoding             ``predictors.linear``
``rf``         predictor: random forest (``predict_std``: spread over trees)   ``predictors.trees``
``gbt``        predictor: gradient-boosted trees                               ``predictors.trees``
``mlp``        predictor: MLP, WeakNAS's weak predictor (4 x 1000 units)       ``predictors.mlp``
``emprox``     predictor: EmProx, kNN over an autoencoder's embeddings         ``predictors.emprox``
``bonas``      predictor: BONAS's GCN + Bayesian linear regression (``std``)    ``predictors.bonas``
``zc_gbt``     predictor: boosted trees on the proxies' scores (+ one-hot)     ``predictors.zc``
=============  ==============================================================  =====================

Candidates get weights inherited from a supernet (``ScoringContext(init="inherit")``, sub-one-shot)
or a seeded fresh initialisation (``init="fresh"``, zero-shot); scoring never modifies the supernet.

Example::

    >>> ctx = ScoringContext(fm, batches=[random_batch(fm, 512) for _ in range(4)], supernet=net)
    >>> make_estimator("sigeo", weights="public_criteo").score(specs, ctx)    # (len(specs),)
"""

from recnas.estimators.base import ESTIMATORS, Estimator, make_estimator
from recnas.estimators.context import Candidate, CandidateBatch, ScoringContext
from recnas.estimators.fisher import Fisher
from recnas.estimators.jacob_cov import JacobCov
from recnas.estimators.naswot import NASWOT
from recnas.estimators.oneshot import OneShot
from recnas.estimators.saliency import GradNorm, Snip
from recnas.estimators.sigeo import SIGEO_PRESETS, SIGEO_TERMS, SiGeo
from recnas.estimators.size import Flops, Params
from recnas.estimators.synflow import Synflow
from recnas.estimators.zico import ZiCo
import recnas.predictors  # noqa: E402,F401  (registers the predictors as estimators)

__all__ = [
    "ESTIMATORS",
    "Estimator",
    "make_estimator",
    "Candidate",
    "CandidateBatch",
    "ScoringContext",
    "SiGeo",
    "SIGEO_PRESETS",
    "SIGEO_TERMS",
    "ZiCo",
    "OneShot",
    "Params",
    "Flops",
    "GradNorm",
    "Snip",
    "Synflow",
    "Fisher",
    "NASWOT",
    "JacobCov",
]
