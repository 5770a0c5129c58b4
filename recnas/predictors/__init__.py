"""recnas.predictors: estimators that learn from measured architectures (``needs_fit``).

=============  ==============================================================  =====================
name           what                                                            module
=============  ==============================================================  =====================
``ridge``      ridge regression on the one-hot encoding                        ``linear``
=============  ==============================================================  =====================

Every predictor is also a registered estimator: ``make_estimator("ridge", alpha=1.0)``.
"""

from recnas.predictors.base import Predictor
from recnas.predictors.linear import Ridge

__all__ = ["Predictor", "Ridge"]
