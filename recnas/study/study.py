"""A study: one strategy's proposals and their measurements, as a view of a :class:`TrialStore`.

A search run is the study ``"search"`` of its run folder's store. The study numbers its proposals
(``index``) and groups them in ask batches (``batch``); :meth:`Study.history` is what strategies
read to decide what to propose next, so a strategy holds no state a fresh instance could not
rebuild from the store.

Example::

    >>> import numpy as np
    >>> from recnas.space import SearchSpace
    >>> from recnas.study import Study, TrialStore
    >>> space = SearchSpace.load("tiny")
    >>> st = Study(TrialStore.memory(), space, measure="toy", settings="s0")
    >>> asked = st.ask_record([space.sample(np.random.default_rng(0))])
    >>> st.tell_record(asked[0], score=0.5)["score"], len(st.pending())
    (0.5, 0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from recnas.space import ArchSpec, SearchSpace
from recnas.study.store import TrialStore

__all__ = ["Study", "Trial", "TWIN_MEASURES"]

#: Measurements that depend only on the model an architecture builds, so a spec that builds the same
#: model as one already measured (the same :func:`recnas.models.layout.functional_key`: it differs only
#: in choices that do not reach the logit) is answered from that measurement instead of measured again:
#: the train-from-scratch oracle's runs (the same parameters, initialisation and batches give the same
#: run). Estimator scores are not among them (some draw fresh weights by the spec's own key).
TWIN_MEASURES = frozenset({"trained"})


@dataclass(frozen=True)
class Trial:
    """One proposal of a study and, once measured, its score (``None`` while pending).

    ``score`` is higher = better; a failed measurement (NaN/inf) reads as ``-inf`` in
    :meth:`Study.history` so strategies rank it last.
    """

    index: int
    batch: int
    spec: ArchSpec
    score: float | None
    record: dict[str, Any]

    @property
    def key(self) -> str:
        return self.record["key"]

    @property
    def done(self) -> bool:
        return self.score is not None


class Study:
    """The proposals of study ``name`` in ``store``, measured by ``(measure, settings)``."""

    def __init__(self, store: TrialStore, space: SearchSpace, measure: str, settings: str,
                 name: str = "search", seed: Any = None, evaluators: dict[str, Any] | None = None) -> None:
        self.store = store
        self.space = space
        self.measure = measure
        self.settings = settings
        self.name = name
        self.seed = seed
        #: the evaluators a strategy may query besides the study's own measure, by the pipeline's
        #: names (e.g. ``oracle``); values may be zero-argument factories, built on first use
        self.evaluators: dict[str, Any] = dict(evaluators or {})
        self._specs: dict[str, ArchSpec] = {}
        self._twins: dict[tuple[str, str, str, Any], dict[str, Any]] = {}  # (functional key, measure, settings, seed) -> record
        self._twins_indexed = 0  # store records indexed into _twins so far (the store only appends)

    # -- views -------------------------------------------------------------------------------------
    def _spec(self, r: dict[str, Any]) -> ArchSpec:
        k = r["key"]
        if k not in self._specs:
            self._specs[k] = ArchSpec.from_dict(r["spec"])
        return self._specs[k]

    def _mine(self) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
        asked: dict[int, dict[str, Any]] = {}
        done: dict[int, dict[str, Any]] = {}
        for r in self.store.records:
            if r.get("study") != self.name or r.get("index") is None:
                continue
            if r["type"] == "asked":
                asked.setdefault(r["index"], r)
            elif r["type"] == "trial":
                done.setdefault(r["index"], r)
                asked.setdefault(r["index"], r)
        return asked, done

    def history(self) -> list[Trial]:
        """Every proposal in index order, with its score once measured."""
        asked, done = self._mine()
        out = []
        for i in sorted(asked):
            r = done.get(i, asked[i])
            score = None
            if i in done:
                s = done[i].get("score")
                score = s if s is not None and math.isfinite(s) else -math.inf
            out.append(Trial(i, int(r.get("batch") or 0), self._spec(r), score, r))
        return out

    def trials(self, max_index: int | None = None) -> list[dict[str, Any]]:
        """The finished records (the search journal's view), in index order, below ``max_index``."""
        _, done = self._mine()
        return [done[i] for i in sorted(done) if max_index is None or i < max_index]

    def pending(self, max_index: int | None = None) -> list[Trial]:
        """Proposals asked but not measured yet (a killed run's), below ``max_index``."""
        return [t for t in self.history() if not t.done and (max_index is None or t.index < max_index)]

    def measured(self) -> tuple[list[ArchSpec], list[float]]:
        """The distinct architectures measured so far (first measurement) and their finite scores."""
        seen: dict[str, tuple[ArchSpec, float]] = {}
        for t in self.history():
            if t.done and math.isfinite(t.score) and t.key not in seen:
                seen[t.key] = (t.spec, float(t.score))
        return [s for s, _ in seen.values()], [v for _, v in seen.values()]

    @property
    def next_index(self) -> int:
        asked, _ = self._mine()
        return max(asked) + 1 if asked else 0

    @property
    def next_batch(self) -> int:
        asked, _ = self._mine()
        return max(int(r.get("batch") or 0) for r in asked.values()) + 1 if asked else 0

    def lookup(self, spec: ArchSpec) -> dict[str, Any] | None:
        """A finished measurement of ``spec`` under this study's measure and settings, if any: its
        own, or for :data:`TWIN_MEASURES` that of a spec building the same model (the record's
        ``key`` then differs from ``spec.key()``)."""
        return self._find(spec, self.measure, self.settings, self.seed)

    def _find(self, spec: ArchSpec, measure: str, settings: str, seed: Any) -> dict[str, Any] | None:
        rec = self.store.lookup(spec.key(), measure, settings, seed)
        if rec is not None or measure not in TWIN_MEASURES:
            return rec
        from recnas.models.layout import functional_key

        records = self.store.records
        for r in records[self._twins_indexed:]:
            if r.get("type") == "trial" and r.get("measure") in TWIN_MEASURES and isinstance(r.get("spec"), dict):
                try:
                    fk = functional_key(self._spec(r))
                except Exception:  # noqa: BLE001 -- a record whose spec no longer parses is no one's twin
                    continue
                self._twins.setdefault((fk, r["measure"], r.get("settings"), r.get("seed")), r)
        self._twins_indexed = len(records)
        return self._twins.get((functional_key(spec), measure, settings, seed))

    # -- queries -----------------------------------------------------------------------------------
    def evaluator(self, name: str) -> Any:
        """The evaluator the pipeline names ``name`` (built on first use)."""
        if name not in self.evaluators:
            raise KeyError(f"study {self.name!r}: no evaluator {name!r}; this pipeline names {sorted(self.evaluators)}")
        ev = self.evaluators[name]
        if callable(ev) and not hasattr(ev, "evaluate"):
            ev = self.evaluators[name] = ev()
        return ev

    def query(self, name: str, specs: list[ArchSpec]) -> list[dict[str, Any]]:
        """Measures ``specs`` with evaluator ``name`` through the store: a measurement the store
        holds (same measure, settings and seed; for :data:`TWIN_MEASURES` also one of a spec building
        the same model, returned under this spec's key with ``twin_of``) is returned as it is; the
        others are measured and
        recorded (``study: "<study>:<name>"``) before this returns, so a killed strategy that asks
        again finds them. Returns the records, in order (``score``, ``values``, ``cached``)."""
        from recnas.faults import fault_point

        ev = self.evaluator(name)
        seed = getattr(ev, "seed", None)
        out = []
        for spec in specs:
            self._specs.setdefault(spec.key(), spec)
            rec = self._find(spec, ev.measure, ev.settings, seed)
            if rec is not None:
                twin = {} if rec["key"] == spec.key() else {"key": spec.key(), "spec": spec.to_dict(), "twin_of": rec["key"]}
                out.append({**rec, **twin, "cached": True})
                continue
            m = ev.evaluate([spec])[0]
            rec = self.store.add_trial(
                key=spec.key(), spec=spec.to_dict(), measure=ev.measure, settings=ev.settings, seed=seed,
                score=m.score, study=f"{self.name}:{name}", values=m.values, seconds=m.seconds,
                train_runs=m.train_runs)
            fault_point("study.query")
            out.append(rec)
        return out

    def cost(self, name: str | None = None) -> dict[str, float]:
        """Seconds and training runs recorded in the store for this study (its measurements and its
        queries; only evaluator ``name``'s queries if given)."""
        studies = {f"{self.name}:{name}"} if name else {self.name} | {f"{self.name}:{n}" for n in self.evaluators}
        recs = [r for r in self.store.records if r.get("type") == "trial" and r.get("study") in studies
                and not r.get("cached")]
        return {"seconds": float(sum(r.get("seconds") or 0.0 for r in recs)),
                "train_runs": int(sum(r.get("train_runs") or 0 for r in recs))}

    # -- writing -----------------------------------------------------------------------------------
    def ask_record(self, specs: list[ArchSpec]) -> list[Trial]:
        """Records ``specs`` as the next batch of proposals (pending) and returns them."""
        index, batch = self.next_index, self.next_batch
        out = []
        for j, spec in enumerate(specs):
            self._specs.setdefault(spec.key(), spec)
            r = self.store.append({"type": "asked", "study": self.name, "index": index + j, "batch": batch,
                                   "key": spec.key(), "spec": spec.to_dict(), "time": time.time()})
            out.append(Trial(index + j, batch, spec, None, r))
        return out

    def tell_record(self, trial: Trial, score: float, *, seconds: float = 0.0, cached: bool = False,
                    values: dict[str, Any] | None = None, train_runs: int = 0) -> dict[str, Any]:
        """Records the measurement of a pending proposal."""
        return self.store.add_trial(
            key=trial.spec.key(), spec=trial.spec.to_dict(), measure=self.measure, settings=self.settings,
            seed=self.seed, score=score, study=self.name, index=trial.index, batch=trial.batch, values=values,
            seconds=seconds, train_runs=train_runs, cached=cached)
