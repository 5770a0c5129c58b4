"""Predictor-driven strategies: WeakNAS (iterative weak predictors) and predictor-guided evolution.

Both are stateless between asks, as :class:`~recnas.search.strategies.PredictorGuided` is: every
ask reads the study's history, fits a fresh predictor on every architecture measured so far and
draws from a generator seeded by ``(seed, number of proposals so far)``. A fresh instance therefore
proposes the same from the same store, and a killed search resumes from the store alone (the
search loop measures the store's pending proposals first; nothing measured is measured again).
They work with whatever evaluator the pipeline names (an estimator, the warmed supernet, the
train-from-scratch oracle): they only read scores from the study.

==================== ==========================================================================
name                 what
==================== ==========================================================================
``weaknas``          WeakNAS (Wu et al., NeurIPS 2021): fit a weak predictor, keep the predicted
                     top-N of a fresh random pool, sample M of them not yet evaluated, repeat
``guided_evolution`` regularized evolution whose children are scored by a predictor (EmProx by
                     default) and only the predicted best are evaluated
==================== ==========================================================================

Example::

    >>> from recnas.space import SearchSpace
    >>> from recnas.study import Study, TrialStore
    >>> from recnas.search.strategies import make_strategy
    >>> space = SearchSpace.load("tiny")
    >>> study = Study(TrialStore.memory(), space, measure="toy", settings="")
    >>> weak = make_strategy("weaknas", space, seed=0, predictor="ridge", initial=10, pool=200, top=20)
    >>> for _ in range(3):
    ...     for t in study.ask_record(weak.ask(study, weak.default_batch)):
    ...         _ = study.tell_record(t, -float(sum(b.dense_dim for b in t.spec.blocks)))
    >>> len(study.history()), weak.fits
    (30, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recnas.search.strategies import Strategy, StrategyError
from recnas.space import ArchSpec, SearchSpace

__all__ = ["WeakNAS", "GuidedEvolution"]


def _distinct(space: SearchSpace, rng: np.random.Generator, n: int, exclude: set[str]) -> list[ArchSpec]:
    """Up to ``n`` distinct uniform samples whose keys are not in ``exclude`` (which is not changed);
    fewer only when ``100 n`` draws do not find them (a space nearly exhausted)."""
    out: list[ArchSpec] = []
    taken = set(exclude)
    for _ in range(100 * n):
        if len(out) == n:
            break
        s = space.sample(rng)
        k = s.key()
        if k not in taken:
            taken.add(k)
            out.append(s)
    return out


def _make_predictor(name: str, params: dict[str, Any] | None) -> Any:
    """A fresh, unfitted predictor (its own seed parameter, if any, as ``params`` give it)."""
    from recnas.estimators import make_estimator

    est = make_estimator(name, **(params or {}))
    if not est.needs_fit:
        raise ValueError(f"estimator {name!r} is not a predictor (it does not fit)")
    return est


class _Fitting(Strategy):
    """Shared by the strategies here: the history check, the seeded generator, the fit."""

    def __init__(self, space: SearchSpace, seed: int, predictor: str, predictor_params: dict[str, Any] | None) -> None:
        try:
            _make_predictor(predictor, predictor_params)
        except ValueError as e:
            raise ValueError(f"{self.name} strategy: {e}") from None
        super().__init__(space, seed)
        self.predictor = predictor
        self.predictor_params = predictor_params
        #: predictors fitted by this instance (not part of the state: a fresh instance starts at 0)
        self.fits = 0

    def _start(self, study: Any) -> tuple[list[Any], np.random.Generator]:
        history = study.history()
        pending = [t.index for t in history if not t.done]
        if pending:
            raise StrategyError(f"strategy {self.name!r}: asked again while proposals {pending} are not measured")
        return history, np.random.default_rng([self.seed, len(history)])

    def _fit(self, study: Any) -> Any:
        specs, scores = study.measured()
        model = _make_predictor(self.predictor, self.predictor_params).fit(specs, scores, space=self.space)
        self.fits += 1
        return model


class WeakNAS(_Fitting):
    """WeakNAS: iterative weak predictors that progressively narrow the sampling region.

    Until ``initial`` distinct architectures are measured, proposals are uniform samples (not
    repeats). Then every ask (a round):

    1. fits a fresh weak ``predictor`` on every architecture measured so far (the registered
       predictors z-score their targets; WeakNAS's MLP of 4 x 1000 units by default, or ``gbt``,
       ``rf``, any registered predictor);
    2. draws a fresh pool of ``pool`` distinct uniform samples (the paper ranks the whole space,
       which a CTR space is too large to list; redrawn every round) and predicts it;
    3. keeps the predicted top ``top`` (N) of the pool (measured ones included, as the paper ranks
       the whole space) and samples the ``n`` (M) proposals uniformly, without replacement, from
       those not evaluated yet; if fewer than M are left, the next best-predicted unevaluated ones
       of the pool fill in, as the public code does.

    The search loop repeats this until its budget is spent. :meth:`summary` reports the best
    evaluated architecture and the predictor's top-1.

    Args:
        predictor: a registered predictor's name (``mlp``: WeakNAS's; ``gbt``; ``rf``; ...).
        predictor_params: its keyword parameters (its own ``seed`` among them: the same every
            round, so a round's fit depends on the measured architectures only).
        initial: uniform samples before the first fit (the paper: 10 on NAS-Bench-201, 100 on 101).
        pool: candidates drawn and predicted each round.
        top: N, the predicted best of the pool sampled from.
        sample: M, proposals per round (the default batch; ``search.batch`` overrides it).
    """

    name = "weaknas"

    def __init__(self, space: SearchSpace, seed: int = 0, predictor: str = "mlp",
                 predictor_params: dict[str, Any] | None = None, initial: int = 10, pool: int = 10000,
                 top: int = 100, sample: int = 10) -> None:
        if initial < 2:
            raise ValueError(f"weaknas strategy: initial must be >= 2 (a predictor fits on at least 2), got {initial}")
        if not 1 <= top <= pool or sample < 1:
            raise ValueError(f"weaknas strategy: need 1 <= top <= pool and sample >= 1, got top={top}, pool={pool}, "
                             f"sample={sample}")
        super().__init__(space, seed, predictor, predictor_params)
        self.initial = initial
        self.pool = pool
        self.top = top
        self.sample = sample

    @property
    def default_batch(self) -> int:
        return self.sample

    def _ranked_pool(self, study: Any, rng: np.random.Generator) -> tuple[list[ArchSpec], np.ndarray, np.ndarray]:
        model = self._fit(study)
        pool = _distinct(self.space, rng, self.pool, set())
        pred = model.predict(pool)
        return pool, pred, np.argsort(-pred, kind="stable")

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        history, rng = self._start(study)
        seen = {t.key for t in history}
        specs, _ = study.measured()
        if len(specs) < self.initial:
            return _distinct(self.space, rng, n, seen)
        pool, _, order = self._ranked_pool(study, rng)
        left = [int(i) for i in order[:self.top] if pool[i].key() not in seen]
        picked = [left[j] for j in rng.permutation(len(left))[:n]]
        if len(picked) < n:
            chosen = set(picked)
            picked += [int(i) for i in order[self.top:] if pool[i].key() not in seen and i not in chosen][:n - len(picked)]
        out = [pool[i] for i in picked]
        if len(out) < n:  # the pool held fewer than n unevaluated architectures
            out += _distinct(self.space, rng, n - len(out), seen | {s.key() for s in out})
        return out

    def summary(self, study: Any) -> dict[str, Any]:
        """The best evaluated architecture and the predictor's top-1 (the final predictor, fitted on
        everything measured, over a fresh pool with the measured architectures added); the same
        for the same store. Keys: ``best`` (``index``, ``key``, ``score``), ``predicted_top1``
        (``key``, ``spec``, ``predicted``, ``measured``: its score if it was measured, else None)."""
        done = [t for t in study.history() if t.done and math.isfinite(t.score)]
        if not done:
            return {"strategy": self.name, "best": None, "predicted_top1": None}
        best = max(done, key=lambda t: t.score)
        out: dict[str, Any] = {"strategy": self.name,
                               "best": {"index": best.index, "key": best.key, "score": float(best.score)},
                               "predicted_top1": None}
        specs, scores = study.measured()
        if len(specs) >= 2:
            rng = np.random.default_rng([self.seed, len(study.history()), 1])
            model = self._fit(study)
            measured = {s.key(): v for s, v in zip(specs, scores)}
            cands = specs + _distinct(self.space, rng, self.pool, set(measured))
            pred = model.predict(cands)
            i = int(np.argmax(pred))
            out["predicted_top1"] = {"key": cands[i].key(), "spec": cands[i].to_dict(), "predicted": float(pred[i]),
                                     "measured": measured.get(cands[i].key())}
        return out


class GuidedEvolution(_Fitting):
    """Regularized evolution guided by a predictor (EmProx's search; NPENAS-style).

    The population is the last ``population`` measured proposals (aging: the oldest leaves as a
    new one is measured). Until it is full, proposals are uniform samples. Then every ask (a
    generation) makes ``candidates`` children, each one :meth:`SearchSpace.mutate` of the best of
    ``sample`` members drawn without replacement, drops repeats and architectures evaluated
    before, fits a fresh ``predictor`` (``emprox`` by default) on every architecture measured so
    far and proposes the ``n`` children it predicts best (uniform samples fill in if too few
    children are new).

    Args:
        predictor: a registered predictor's name (``emprox``; any other works).
        predictor_params: its keyword parameters (e.g. ``{k: 60, cache_dir: ...}``).
        population: members kept (NASRec's evolution: 128).
        sample: tournament size (64).
        children: proposals per generation (the default batch; 8).
        candidates: children scored by the predictor per generation (10 x ``children`` by default).
    """

    name = "guided_evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, predictor: str = "emprox",
                 predictor_params: dict[str, Any] | None = None, population: int = 128, sample: int = 64,
                 children: int = 8, candidates: int = 80) -> None:
        if not 1 <= sample <= population:
            raise ValueError(f"guided_evolution strategy: sample must be in [1, population={population}], got {sample}")
        if children < 1 or candidates < 1:
            raise ValueError(f"guided_evolution strategy: children and candidates must be >= 1, got {children}, "
                             f"{candidates}")
        super().__init__(space, seed, predictor, predictor_params)
        self.population = population
        self.sample = sample
        self.children = children
        self.candidates = candidates

    @property
    def default_batch(self) -> int:
        return self.children

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        history, rng = self._start(study)
        seen = {t.key for t in history}
        members = history[-self.population:]
        if len(history) < self.population:
            return _distinct(self.space, rng, n, seen)
        kids: dict[str, ArchSpec] = {}
        for _ in range(self.candidates):
            idx = rng.choice(len(members), size=self.sample, replace=False)
            parent = max((members[i] for i in idx), key=lambda t: t.score)
            child = self.space.mutate(parent.spec, rng)
            if child.key() not in seen:
                kids.setdefault(child.key(), child)
        children = list(kids.values())
        out: list[ArchSpec] = []
        if children:
            specs, _ = study.measured()
            if len(specs) >= 2:
                pred = self._fit(study).predict(children)
                out = [children[i] for i in np.argsort(-pred, kind="stable")[:n]]
            else:
                out = children[:n]
        if len(out) < n:
            out += _distinct(self.space, rng, n - len(out), seen | {s.key() for s in out})
        return out
