"""The estimator interface every ranking method implements, and the registry that names them.

An estimator follows the scikit-learn contract: its parameters are the explicit keyword arguments of
``__init__``, stored unchanged under the same names (no logic there), so ``get_params`` / ``clone``
work for free. Its main method is ``score(specs, ctx) -> (n,)`` -- one float per architecture,
**higher = predicted better, i.e. lower log loss**. Predictor-style estimators (trained on measured
architectures, :class:`recnas.predictors.Predictor`) set ``needs_fit = True`` and add
``fit(specs, y) -> self``; learned state ends in ``_``.

Parameter values are checked when scoring starts (:meth:`Estimator.check_params`, a one-line
``ValueError`` naming the parameter), and configuration loaders call it to fail before any work.
Stored scores are keyed by :meth:`Estimator.identity_params`: the parameters, except those added
after scores were first stored (``later_params``) while they hold the value that reproduces the
earlier scores -- so adding an option does not orphan the scores stored before it.

Capabilities are class attributes that callers (the bench, the search) read instead of names:
``needs_weights`` (reads a candidate's weights: ``False`` for size proxies, scored once with
``init: none``), ``needs_supernet`` (meaningful only with inherited weights) and ``needs_fit``.

Subclasses that set a class attribute ``name`` are registered in :data:`ESTIMATORS` when their
module is imported (all built-in ones are, by ``import recnas.estimators``).

Example::

    >>> from recnas.estimators import make_estimator
    >>> est = make_estimator("sigeo", weights="zico")
    >>> est.get_params()["weights"]
    'zico'
    >>> est.clone().get_params() == est.get_params()
    True
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from recnas.estimators.context import ScoringContext
    from recnas.space.spec import ArchSpec

__all__ = ["Estimator", "ESTIMATORS", "make_estimator"]

#: name -> estimator class; filled by subclasses that define ``name``.
ESTIMATORS: dict[str, type[Estimator]] = {}


class Estimator:
    """Base class: scores architectures; higher = predicted better (lower log loss).

    Class attributes:
        name: registry name (``make_estimator(name)``); empty for abstract classes.
        needs_weights: the score reads the candidate's weights (``False``: a size proxy, the
            same under every ``init``).
        needs_supernet: the estimator is only meaningful with inherited weights
            (``ctx.init == "inherit"`` and a supernet), e.g. the one-shot score.
        needs_fit: predictor-style estimators must be ``fit`` on measured architectures first.
    """

    name: ClassVar[str] = ""
    needs_weights: ClassVar[bool] = True
    needs_supernet: ClassVar[bool] = False
    needs_fit: ClassVar[bool] = False
    #: parameters added after scores were first stored -> the value that reproduces those scores
    later_params: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            other = ESTIMATORS.get(cls.name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise ValueError(
                    f"estimator name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}"
                )
            ESTIMATORS[cls.name] = cls

    # -- parameters ------------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's keyword parameters, in order."""
        sig = inspect.signature(cls.__init__)
        names = []
        for p in sig.parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}: estimators take explicit keyword parameters only")
            names.append(p.name)
        return names

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {n: getattr(self, n) for n in self.param_names()}

    def set_params(self, **params: Any) -> Estimator:
        """Sets parameters by name; an unknown name is an error listing the allowed ones."""
        allowed = self.param_names()
        bad = sorted(set(params) - set(allowed))
        if bad:
            raise ValueError(
                f"estimator {self.name or type(self).__name__!r}: unknown parameters {bad}; "
                f"allowed parameters are {allowed}"
            )
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def identity_params(self) -> dict[str, Any]:
        """:meth:`get_params` without the ``later_params`` that hold their earlier value: what keys a
        stored score (a default-valued new option leaves the keys of earlier scores unchanged)."""
        from recnas.identity import without_earlier

        return without_earlier(self.get_params(), self.later_params)

    def check_params(self) -> None:
        """Raises a one-line ``ValueError`` naming the parameter if a value is not allowed (called when
        scoring starts; no-op here)."""

    def clone(self) -> Estimator:
        """A new, unfitted estimator with deep copies of the same parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- scoring ---------------------------------------------------------------------------------
    def score(self, specs: Sequence[ArchSpec], ctx: ScoringContext) -> np.ndarray:
        """Scores ``specs``: ``(len(specs),)`` float64, higher = predicted lower log loss."""
        self.check_params()
        if self.needs_fit and not getattr(self, "is_fitted_", False):
            raise RuntimeError(f"estimator {self.name!r} must be fit before it can score")
        if self.needs_supernet and (ctx.init != "inherit" or ctx.supernet is None):
            raise ValueError(
                f"estimator {self.name!r} scores inherited weights: it needs a supernet and "
                f"init='inherit' (got init={ctx.init!r}, supernet={'set' if ctx.supernet else None})"
            )
        return np.array([float(self.score_spec(s, ctx)) for s in specs], dtype=np.float64)

    def score_spec(self, spec: ArchSpec, ctx: ScoringContext) -> float:
        """Scores one architecture (subclasses implement this or override :meth:`score`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement score_spec")


def make_estimator(name: str, **params: Any) -> Estimator:
    """Builds a registered estimator by name.

    Raises:
        ValueError: an unknown ``name`` (the message lists the known names) or an unknown parameter
            (the message lists the estimator's parameters).
    """
    import recnas.estimators  # noqa: F401  (registers the built-in estimators)

    cls = ESTIMATORS.get(name)
    if cls is None:
        raise ValueError(f"unknown estimator {name!r}; known estimators are {sorted(ESTIMATORS)}")
    allowed = cls.param_names()
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise ValueError(
            f"estimator {name!r}: unknown parameters {bad}; allowed parameters are {allowed}"
        )
    return cls(**params)
