"""Search strategies: ``ask(study, n) -> specs``, reading the history from the trial store (as optuna's samplers).

A strategy proposes the next ``n`` architectures of a :class:`~recnas.study.Study` from what the
study's store holds; it keeps nothing that a fresh instance could not rebuild from the store, so a
killed search resumes from the store alone. Strategies are registered by name and configured as
``{name, params}`` like estimators (``search: {strategy: evolution, params: {population: 32}}``):

==============  =============================================================================
name            what
==============  =============================================================================
``random``      uniform samples of the space, avoiding repeats
``evolution``   regularized ("aging") evolution with NASRec's generation batching
``predictor``   fit a predictor on everything measured so far, propose the best of a random pool
``weaknas``     WeakNAS's iterative weak predictors (:mod:`recnas.search.weaknas`)
``guided_...``  ``guided_evolution``: evolution whose children a predictor (EmProx) scores first
``bonas``       BONAS: a GCN + Bayesian regression surrogate, UCB over a random pool (:mod:`~.bonas`)
==============  =============================================================================

Scores are "higher is better". ``random`` and ``evolution`` draw from one seeded generator in
sequence (as they always did, so old search journals still reproduce); a fresh instance replays the
study's batches to reach the same state, checking that it proposes what the store says it did.

Example::

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> from recnas.study import Study, TrialStore
    >>> space = SearchSpace.load("tiny")
    >>> study = Study(TrialStore.memory(), space, measure="toy", settings="")
    >>> evo = make_strategy("evolution", space, seed=0, population=4, sample=2, children=2)
    >>> for _ in range(4):
    ...     for t in study.ask_record(evo.ask(study, 2)):
    ...         _ = study.tell_record(t, -float(t.spec.blocks[0].dense_dim))  # toy: prefer narrow blocks
    >>> len(study.history())
    8
"""

from __future__ import annotations

import inspect
from collections import deque
from typing import Any, ClassVar

import numpy as np

from recnas.space import ArchSpec, SearchSpace

__all__ = ["Strategy", "SequentialStrategy", "RandomSearch", "RegularizedEvolution", "PredictorGuided",
           "STRATEGIES", "make_strategy", "StrategyError"]

#: name -> strategy class; filled by subclasses that define ``name``.
STRATEGIES: dict[str, type[Strategy]] = {}


class StrategyError(ValueError):
    """A strategy that cannot continue a study (its proposals differ from what the store recorded)."""


class Strategy:
    """Base class. Subclasses set ``name``, take ``(space, seed, **explicit keyword params)`` and
    implement :meth:`ask`; :attr:`default_batch` is how many to ask at a time by default."""

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            STRATEGIES[cls.name] = cls

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed

    @classmethod
    def param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "space", "seed")]

    @property
    def default_batch(self) -> int:
        return 8

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        """The next ``n`` architectures to measure (every earlier proposal is measured)."""
        raise NotImplementedError


class SequentialStrategy(Strategy):
    """A strategy that draws from one seeded generator and learns from tells in order.

    Subclasses implement :meth:`_propose` (a list of proposals, used one at a time) and
    :meth:`_on_tell`. :meth:`ask` first tells the study's measured batches it has not seen; a fresh
    instance replays them (re-proposing each batch and checking it matches the store).
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.rng = np.random.default_rng(seed)
        self._queue: deque[ArchSpec] = deque()
        self._batches_proposed = 0
        self._batches_told = 0

    def _next(self) -> ArchSpec:
        if not self._queue:
            self._queue.extend(self._propose())
        return self._queue.popleft()

    def _sync(self, study: Any) -> None:
        batches: dict[int, list[Any]] = {}
        for t in study.history():
            batches.setdefault(t.batch, []).append(t)
        for b in sorted(batches)[self._batches_told:]:
            trials = batches[b]
            if self._batches_told >= self._batches_proposed:  # replay: propose again what was proposed
                for t in trials:
                    spec = self._next()
                    if spec.key() != t.key:
                        raise StrategyError(
                            f"{getattr(study.store, 'path', None) or 'the store'}: proposal {t.index} is "
                            f"architecture {t.key}, but strategy {self.name!r} now proposes {spec.key()}; "
                            "the store was written by different code or settings -- use a new output folder")
                self._batches_proposed += 1
            pending = [t.index for t in trials if not t.done]
            if pending:
                raise StrategyError(f"strategy {self.name!r}: asked again while proposals {pending} are not measured")
            for t in trials:
                self._on_tell(t.spec, float(t.score))
            self._batches_told += 1

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        self._sync(study)
        specs = [self._next() for _ in range(n)]
        self._batches_proposed += 1
        return specs

    def _propose(self) -> list[ArchSpec]:
        raise NotImplementedError

    def _on_tell(self, spec: ArchSpec, score: float) -> None:
        pass


class RandomSearch(SequentialStrategy):
    """Uniform samples of the space, avoiding repeats where the space allows."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self._seen: set[str] = set()

    def _propose(self) -> list[ArchSpec]:
        for _ in range(100):
            spec = self.space.sample(self.rng)
            if spec.key() not in self._seen:
                break
        self._seen.add(spec.key())
        return [spec]


class RegularizedEvolution(SequentialStrategy):
    """Regularized ("aging") evolution (Real et al. 2019) with NASRec's generation batching.

    The first ``population`` proposals are uniform samples. Then each generation makes ``children``
    children: each from the best of ``sample`` members drawn without replacement from the
    population, by one :meth:`SearchSpace.mutate`. A measured child joins the population and the
    oldest member leaves. NASRec's full-run settings (the defaults): population 128, sample 64,
    8 children a generation. Asked ``children`` at a time by default.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population: int = 128, sample: int = 64,
                 children: int = 8) -> None:
        if not 1 <= sample <= population:
            raise ValueError(f"evolution: sample must be in [1, population={population}], got {sample}")
        if children < 1:
            raise ValueError(f"evolution: children must be >= 1, got {children}")
        super().__init__(space, seed)
        self.population = population
        self.sample = sample
        self.children = children
        self.members: deque[tuple[ArchSpec, float]] = deque()
        self._initial_left = population

    @property
    def default_batch(self) -> int:
        return self.children

    def _propose(self) -> list[ArchSpec]:
        if self._initial_left > 0:
            self._initial_left -= 1
            return [self.space.sample(self.rng)]
        if len(self.members) < self.sample:
            # The initial population is still being measured (asks ran ahead of tells).
            return [self.space.sample(self.rng)]
        out = []
        members = list(self.members)
        for _ in range(self.children):
            idx = self.rng.choice(len(members), size=self.sample, replace=False)
            parent = max((members[i] for i in idx), key=lambda m: m[1])
            out.append(self.space.mutate(parent[0], self.rng))
        return out

    def _on_tell(self, spec: ArchSpec, score: float) -> None:
        self.members.append((spec, score))
        if len(self.members) > self.population:
            self.members.popleft()


class PredictorGuided(Strategy):
    """Fit a predictor on every architecture measured so far; propose the best-predicted of a random pool.

    Until ``initial`` distinct architectures are measured, proposals are uniform samples. Then each
    ask fits a fresh ``predictor`` (any registered estimator with ``needs_fit``, e.g. ``ridge``)
    on the measured architectures' scores, predicts a pool of ``pool`` new uniform samples (not
    measured, not proposed before) and proposes the ``n`` best predicted. The generator is seeded by
    ``(seed, number of proposals so far)``, so a fresh instance proposes the same from the same store.

    Args:
        predictor: the predictor's registered name.
        predictor_params: its keyword parameters.
        initial: uniform samples before the first fit (at least 2).
        pool: candidates predicted per ask.
    """

    name = "predictor"

    def __init__(self, space: SearchSpace, seed: int = 0, predictor: str = "ridge",
                 predictor_params: dict[str, Any] | None = None, initial: int = 16, pool: int = 1000) -> None:
        from recnas.estimators import make_estimator

        est = make_estimator(predictor, **(predictor_params or {}))
        if not est.needs_fit:
            raise ValueError(f"predictor strategy: estimator {predictor!r} is not a predictor (it does not fit)")
        if initial < 2 or pool < 1:
            raise ValueError(f"predictor strategy: initial must be >= 2 and pool >= 1, got {initial}, {pool}")
        super().__init__(space, seed)
        self.predictor = predictor
        self.predictor_params = predictor_params
        self.initial = initial
        self.pool = pool
        self.fits = 0

    def _fresh(self, rng: np.random.Generator, seen: set[str], n: int) -> list[ArchSpec]:
        out: list[ArchSpec] = []
        for _ in range(100 * n):
            if len(out) == n:
                break
            s = self.space.sample(rng)
            if s.key() not in seen:
                seen.add(s.key())
                out.append(s)
        return out

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        from recnas.estimators import make_estimator

        history = study.history()
        pending = [t.index for t in history if not t.done]
        if pending:
            raise StrategyError(f"strategy {self.name!r}: asked again while proposals {pending} are not measured")
        rng = np.random.default_rng([self.seed, len(history)])
        seen = {t.key for t in history}
        specs, scores = study.measured()
        if len(specs) < self.initial:
            return self._fresh(rng, seen, n)
        model = make_estimator(self.predictor, **(self.predictor_params or {})).fit(specs, scores, space=self.space)
        self.fits += 1
        pool = self._fresh(rng, seen, self.pool)
        pred = model.predict(pool)
        order = np.argsort(-pred, kind="stable")[:n]
        return [pool[i] for i in order]


def make_strategy(name: str, space: SearchSpace, seed: int = 0, **params: Any) -> Strategy:
    """Builds a registered strategy; an unknown name or parameter lists the known ones."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ValueError(f"unknown search strategy {name!r}; known: {sorted(STRATEGIES)}")
    bad = sorted(set(params) - set(cls.param_names()))
    if bad:
        raise ValueError(f"strategy {name!r}: unknown parameters {bad}; allowed parameters are {cls.param_names()}")
    return cls(space, seed=seed, **params)


# Strategies of their own modules register on import (after the base classes they subclass).
from recnas.search import weaknas as _weaknas  # noqa: E402,F401
from recnas.search import bonas as _bonas  # noqa: E402,F401
