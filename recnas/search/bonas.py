"""BONAS (strategy ``bonas``): Bayesian optimisation with a GCN surrogate and a UCB acquisition.

Stateless between asks, as the strategies of :mod:`recnas.search.weaknas`: every ask reads the
study's history, fits a fresh surrogate (:class:`recnas.predictors.bonas.BONAS`, its own fixed
``seed``) on every architecture measured so far and draws from a generator seeded by
``(seed, number of proposals so far)``, so a fresh instance proposes the same from the same store
and a killed search resumes from the store alone. It works with whatever evaluator the pipeline
names (an estimator, the warmed supernet, the train-from-scratch oracle).

Example::

    >>> from recnas.space import SearchSpace
    >>> from recnas.study import Study, TrialStore
    >>> from recnas.search.strategies import make_strategy
    >>> space = SearchSpace.load("tiny")
    >>> study = Study(TrialStore.memory(), space, measure="toy", settings="")
    >>> bo = make_strategy("bonas", space, seed=0, initial=10, pool=200, k=10, predictor_params={"epochs": 5})
    >>> for _ in range(3):
    ...     for t in study.ask_record(bo.ask(study, bo.default_batch)):
    ...         _ = study.tell_record(t, -float(sum(b.dense_dim for b in t.spec.blocks)))
    >>> len(study.history()), bo.fits
    (30, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recnas.search.weaknas import _distinct, _Fitting
from recnas.space import ArchSpec, SearchSpace

__all__ = ["BONASSearch"]


class BONASSearch(_Fitting):
    """BONAS: score a fresh random pool by UCB under the GCN + BLR surrogate, measure the top k.

    Until ``initial`` distinct architectures are measured, proposals are uniform samples (not
    repeats; the paper's ``init_num`` = 100, measured together). Then every ask (a round):

    1. fits a fresh surrogate (predictor ``bonas``, ``predictor_params``) on every architecture
       measured so far: the GCN end to end on the logit targets, then the Bayesian linear
       regression on its embeddings;
    2. draws a pool of ``pool`` distinct uniform samples not measured or proposed before (the
       paper's recommended 10,000; redrawn every round);
    3. proposes the ``n`` (``k``, 100, by default) of the pool with the highest
       ``UCB = E + kappa * Std`` of ``sigmoid(f)`` (``kappa`` 0.5), ``f`` the BLR's Gaussian
       prediction of the logit target (:func:`recnas.predictors.bonas.ucb`).

    The search loop measures them through the study's evaluator and repeats until its budget is
    spent. :meth:`summary` reports the best measured architecture, the surrogate's top-1 and the
    cost of every round (from the store).

    Args:
        predictor_params: the surrogate's parameters (``epochs``, ``lr``, ``target``, ``seed``, ...).
        initial: uniform samples before the first fit (at least 2).
        pool: candidates scored per round.
        k: proposals per round (the default batch; ``search.batch`` overrides it).
        kappa: the UCB's weight on the std.
    """

    name = "bonas"

    def __init__(self, space: SearchSpace, seed: int = 0, predictor_params: dict[str, Any] | None = None,
                 initial: int = 100, pool: int = 10000, k: int = 100, kappa: float = 0.5) -> None:
        if initial < 2:
            raise ValueError(f"bonas strategy: initial must be >= 2 (the surrogate fits on at least 2), got {initial}")
        if not 1 <= k <= pool:
            raise ValueError(f"bonas strategy: need 1 <= k <= pool, got k={k}, pool={pool}")
        if not kappa >= 0:
            raise ValueError(f"bonas strategy: kappa must be >= 0, got {kappa}")
        super().__init__(space, seed, "bonas", predictor_params)
        self.initial = initial
        self.pool = pool
        self.k = k
        self.kappa = kappa

    @property
    def default_batch(self) -> int:
        return self.k

    def _scored_pool(self, study: Any, rng: np.random.Generator, seen: set[str]) -> tuple[list[ArchSpec], np.ndarray]:
        model = self._fit(study)
        pool = _distinct(self.space, rng, self.pool, seen)
        return pool, model.ucb(pool, kappa=self.kappa)

    def ask(self, study: Any, n: int) -> list[ArchSpec]:
        history, rng = self._start(study)
        seen = {t.key for t in history}
        specs, _ = study.measured()
        if len(specs) < self.initial:
            return _distinct(self.space, rng, n, seen)
        pool, acq = self._scored_pool(study, rng, seen)
        out = [pool[i] for i in np.argsort(-acq, kind="stable")[:n]]
        if len(out) < n:  # the space held fewer than n unmeasured architectures in reach
            out += _distinct(self.space, rng, n - len(out), seen | {s.key() for s in out})
        return out

    def rounds(self, study: Any) -> list[dict[str, Any]]:
        """Every ask batch of the store, in order: ``batch``, ``kind`` (``initial`` or ``ucb``: were
        ``initial`` distinct architectures measured before it), ``proposals``, ``measured`` (not
        from the store's cache), ``seconds`` and ``train_runs`` of its measurements, and the best
        score measured so far (``best``)."""
        batches: dict[int, list[Any]] = {}
        for t in study.history():
            batches.setdefault(t.batch, []).append(t)
        out: list[dict[str, Any]] = []
        distinct: set[str] = set()
        best = -math.inf
        for b in sorted(batches):
            trials = batches[b]
            kind = "initial" if len(distinct) < self.initial else "ucb"
            recs = [t.record for t in trials if t.done]
            for t in trials:
                if t.done and math.isfinite(t.score):
                    distinct.add(t.key)
                    best = max(best, t.score)
            out.append({"batch": b, "kind": kind, "proposals": len(trials),
                        "measured": sum(1 for r in recs if not r.get("cached")),
                        "seconds": float(sum(r.get("seconds") or 0.0 for r in recs)),
                        "train_runs": int(sum(r.get("train_runs") or 0 for r in recs)),
                        "best": best if math.isfinite(best) else None})
        return out

    def summary(self, study: Any) -> dict[str, Any]:
        """The best measured architecture, the surrogate's top-1 by predicted mean (the final
        surrogate, fitted on everything measured, over a fresh pool with the measured ones added)
        and :meth:`rounds`; the same for the same store. Keys: ``best`` (``index``, ``key``,
        ``score``), ``predicted_top1`` (``key``, ``spec``, ``predicted``, ``std``, ``measured``:
        its score if it was measured, else None), ``rounds``."""
        done = [t for t in study.history() if t.done and math.isfinite(t.score)]
        out: dict[str, Any] = {"strategy": self.name, "best": None, "predicted_top1": None,
                               "rounds": self.rounds(study)}
        if not done:
            return out
        best = max(done, key=lambda t: t.score)
        out["best"] = {"index": best.index, "key": best.key, "score": float(best.score)}
        specs, scores = study.measured()
        if len(specs) >= 2:
            rng = np.random.default_rng([self.seed, len(study.history()), 1])
            model = self._fit(study)
            measured = {s.key(): v for s, v in zip(specs, scores)}
            cands = specs + _distinct(self.space, rng, self.pool, set(measured))
            pred, std = model.predict(cands), model.predict_std(cands)
            i = int(np.argmax(pred))
            out["predicted_top1"] = {"key": cands[i].key(), "spec": cands[i].to_dict(), "predicted": float(pred[i]),
                                     "std": float(std[i]), "measured": measured.get(cands[i].key())}
        return out
