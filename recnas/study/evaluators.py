"""Evaluators: one contract for everything that measures an architecture.

``evaluate(specs) -> list[Measurement]`` (``score`` higher = better, plus other ``values``), and
cost accounting: the seconds spent and the ground-truth training runs consumed, per measurement and
in total (:attr:`Evaluator.seconds`, :attr:`Evaluator.train_runs`). ``measure`` names what is
measured and :meth:`Evaluator.identity` is everything that decides the value; the store keys every
measurement by both (:func:`recnas.study.digest` of the identity), so an evaluator never measures
twice what the store already holds.

- :class:`ProxyEvaluator`: an estimator (zero-cost proxy, one-shot or sub-one-shot score) on a
  :class:`~recnas.estimators.ScoringContext`; costs seconds, no training runs.
- :class:`TrainEvaluator`: the ground-truth oracle: trains the architecture from scratch
  (:func:`recnas.train.scratch.train_from_scratch`, the path ``recnas bench build`` uses) at the
  recipe's fidelity; score = minus the validation log loss; costs one training run.

Example::

    >>> ev = ProxyEvaluator(make_estimator("params"), ctx, identity={"estimator": "params"})  # doctest: +SKIP
    >>> [m.score for m in ev.evaluate(specs)]                                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recnas.space import ArchSpec
from recnas.study.store import digest

__all__ = ["Measurement", "Evaluator", "ProxyEvaluator", "TrainEvaluator"]


@dataclass(frozen=True)
class Measurement:
    """One architecture's measurement: ``score`` (higher = better; NaN = failed), other metrics in
    ``values``, and its cost."""

    score: float
    seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)
    train_runs: int = 0


class Evaluator:
    """Base class: subclasses set :attr:`measure` and implement :meth:`_evaluate` and :meth:`identity`."""

    measure: str = ""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.train_runs = 0

    def identity(self) -> dict[str, Any]:
        """Everything that decides the value (JSON-like)."""
        raise NotImplementedError

    @property
    def settings(self) -> str:
        """:func:`recnas.study.digest` of :meth:`identity`: the store's settings key."""
        return digest(self.identity())

    def evaluate(self, specs: Sequence[ArchSpec]) -> list[Measurement]:
        """Measures ``specs`` in order and adds their cost to the totals."""
        out = self._evaluate(list(specs))
        if len(out) != len(specs):
            raise RuntimeError(f"evaluator {self.measure!r} returned {len(out)} measurements for {len(specs)} architectures")
        for m in out:
            self.seconds += m.seconds
            self.train_runs += m.train_runs
        return out

    def _evaluate(self, specs: list[ArchSpec]) -> list[Measurement]:
        raise NotImplementedError


class ProxyEvaluator(Evaluator):
    """An estimator's score of each architecture, timed per architecture.

    Args:
        estimator: a (fitted, if it ``needs_fit``) :class:`~recnas.estimators.Estimator`.
        ctx: the scoring context (data, supernet, init).
        identity: what decides the score besides the estimator's parameters (the scoring data,
            the supernet's warm-up, the init); the estimator's name and parameters are added.
    """

    def __init__(self, estimator: Any, ctx: Any, identity: dict[str, Any]) -> None:
        super().__init__()
        self.estimator = estimator
        self.ctx = ctx
        # identity_params: an option added later, at the value that reproduces earlier scores, keeps
        # the stored scores' keys. An object that only follows the scoring protocol (name, score,
        # get_params) without subclassing Estimator is keyed by all its parameters.
        params = getattr(estimator, "identity_params", estimator.get_params)()
        self._identity = {"estimator": estimator.name, "params": params, **identity}
        self.measure = estimator.name

    def identity(self) -> dict[str, Any]:
        return self._identity

    def _evaluate(self, specs: list[ArchSpec]) -> list[Measurement]:
        out = []
        for spec in specs:
            t0 = time.perf_counter()
            s = float(self.estimator.score([spec], self.ctx)[0])
            out.append(Measurement(s if math.isfinite(s) else math.nan, time.perf_counter() - t0))
        return out


class TrainEvaluator(Evaluator):
    """Trains each architecture from scratch: the oracle a strategy queries with a budget in runs.

    Each run trains in ``run_root/<architecture key>-s<seed>/`` with checkpoints, so a killed query
    resumes inside its run. Score: minus the validation log loss (the test split is reported in
    ``values`` but never used to choose).

    Args:
        recipe: a :class:`recnas.train.scratch.TrainRecipe` (``validate`` must be on).
        seed: the training seed.
        data_dir, feature_map, splits: the prepared data (``recnas.data.loader.load_prepared``).
        run_root: where the runs' folders go.
        data_identity: the data's identity (``DataConfig.identity()``); with the recipe and the ops'
            version it is the measurement's identity (:func:`recnas.train.scratch.trained_identity`);
            the seed is a key of its own in the store.
        env: the process's ``init_distributed()`` environment (one process: every run is local).
    """

    measure = "trained"

    def __init__(self, recipe: Any, seed: int, data_dir: Any, feature_map: Any, splits: dict[str, Any],
                 run_root: Any, data_identity: Any, env: Any = None) -> None:
        from pathlib import Path

        from recnas.train.scratch import trained_identity

        if not recipe.validate:
            raise ValueError("oracle: the train-from-scratch oracle scores the validation split; set validate: true")
        super().__init__()
        self.recipe, self.seed = recipe, seed
        self.data_dir, self.feature_map, self.splits = data_dir, feature_map, splits
        self.run_root = Path(run_root)
        self.env = env
        self._identity = trained_identity(recipe, data_identity)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def _evaluate(self, specs: list[ArchSpec]) -> list[Measurement]:
        from recnas.faults import fault_point
        from recnas.train.distributed import init_distributed
        from recnas.train.scratch import train_from_scratch

        env = self.env or init_distributed()
        out = []
        for spec in specs:
            t0 = time.perf_counter()
            r = train_from_scratch(spec, self.seed, self.recipe, self.data_dir, self.feature_map, self.splits,
                                   self.run_root / f"{spec.key()}-s{self.seed}", env=env)
            ll = r["val_logloss"]
            out.append(Measurement(-ll if math.isfinite(ll) else math.nan, time.perf_counter() - t0, r, 1))
            fault_point("oracle.run")
        return out
