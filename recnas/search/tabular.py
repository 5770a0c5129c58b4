"""A finite search space and table evaluators: search strategies run over a benchmark's architectures.

A tabular simulation (NAS-Bench style) runs a search whose every query is answered from a table of
architectures measured beforehand, so the search may only pick among them. Two pieces make every
registered strategy (:mod:`recnas.search.strategies`) do that unchanged, through a
:class:`~recnas.study.Study`:

- :class:`TabularSpace`: a :class:`~recnas.space.SearchSpace` (same choices, so featurizers and
  predictors see the real space) whose :meth:`~TabularSpace.sample` draws uniformly from the listed
  architectures and whose :meth:`~TabularSpace.mutate` makes one real mutation of the underlying
  space and returns it if it is listed, else one of the parent's ``neighbours`` (default 5)
  nearest listed architectures, uniformly (Hamming distance of the one-hot encodings,
  :func:`recnas.space.features.onehot`; the parent itself excluded; every architecture tied with
  the last of them included). Every architecture it returns is one of the listed objects, so
  nothing outside the list can be proposed.

  Why neighbours and not "the listed architecture nearest to the mutation": in a sparse table
  (60 random architectures of ``nasrec_small`` lie tens of choices apart) one mutation barely moves
  the parent, so the nearest listed architecture to it is nearly always the parent's single
  nearest neighbour; evolution then walks one fixed path and refills its population with repeats.
  A random near neighbour is the table's version of a small random step.
- :class:`TableEvaluator`: an :class:`~recnas.study.Evaluator` that answers from a stored value per
  architecture and charges a stored cost (seconds, training runs); :func:`truth_evaluator` builds
  the ground-truth one (score = minus the stored log loss), and a proxy's column of a comparison's
  ``scores.csv`` makes a cheap one (:mod:`recnas.bench.regret`).

Caveat (EmProx): the EmProx predictor trains its autoencoder on architectures *sampled from the
space it is given* and caches it under the space's definition, which a :class:`TabularSpace`
shares with its underlying space. Load or train the autoencoder on the underlying space first
(``make_estimator("emprox", ...).autoencoder(tabular.base)``, as :mod:`recnas.bench.regret` does);
otherwise it would be trained on the listed architectures only and cached as the space's.

Example::

    >>> import numpy as np
    >>> from recnas.bench.groundtruth import sample_archs
    >>> from recnas.space import SearchSpace
    >>> base = SearchSpace.load("tiny")
    >>> specs = sample_archs(base, 8, seed=0)
    >>> space = TabularSpace.of(base, specs)
    >>> rng = np.random.default_rng(0)
    >>> keys = {s.key() for s in specs}
    >>> all(space.sample(rng).key() in keys and space.mutate(specs[0], rng).key() in keys for _ in range(50))
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from recnas.space import ArchSpec, SearchSpace
from recnas.study.evaluators import Evaluator, Measurement

__all__ = ["TabularSpace", "TableEvaluator", "truth_evaluator", "NotInTable"]


class NotInTable(KeyError):
    """An architecture the table has no entry for (a tabular search proposed outside its list)."""


class TabularSpace(SearchSpace):
    """The listed architectures of ``base`` as a space (see the module docstring); build with :meth:`of`.

    Attributes: ``base`` (the underlying space), ``candidates`` (the listed specs, in order),
    ``index`` (key -> position).
    """

    base: SearchSpace
    candidates: tuple[ArchSpec, ...]
    index: dict[str, int]

    @classmethod
    def of(cls, base: SearchSpace, specs: Sequence[ArchSpec], neighbours: int = 5) -> TabularSpace:
        """The space of ``specs`` (architectures of ``base``; repeats by key are dropped);
        ``neighbours``: how many nearest listed architectures a mutation picks from."""
        if neighbours < 1:
            raise ValueError(f"TabularSpace: neighbours must be >= 1, got {neighbours}")
        if isinstance(base, TabularSpace):
            base = base.base
        obj = cls(**{f.name: getattr(base, f.name) for f in fields(base)})
        if base.file:
            object.__setattr__(obj, "file", base.file)
        cands: list[ArchSpec] = []
        index: dict[str, int] = {}
        for s in specs:
            base.validate(s)
            k = s.key()
            if k not in index:
                index[k] = len(cands)
                cands.append(s)
        if not cands:
            raise ValueError("TabularSpace: no architectures listed")
        from recnas.space.features import onehot

        object.__setattr__(obj, "base", base)
        object.__setattr__(obj, "candidates", tuple(cands))
        object.__setattr__(obj, "index", index)
        object.__setattr__(obj, "_enc", onehot(base, cands).astype(np.int16))
        object.__setattr__(obj, "neighbours", int(neighbours))
        return obj

    def __len__(self) -> int:
        return len(self.candidates)

    def contains(self, spec: ArchSpec) -> bool:
        """Whether ``spec`` is one of the listed architectures."""
        return spec.key() in self.index

    def size(self) -> float:
        return float(len(self.candidates))

    def sample(self, rng: np.random.Generator) -> ArchSpec:
        """A listed architecture, uniformly (one draw of ``rng``)."""
        return self.candidates[int(rng.integers(len(self.candidates)))]

    def near(self, spec: ArchSpec) -> list[int]:
        """Positions of the ``neighbours`` listed architectures nearest to ``spec`` (Hamming distance
        of the one-hot encodings; ``spec`` itself excluded; all those tied with the last one
        included), nearest first; ``[]`` when ``spec`` is the only one listed."""
        from recnas.space.features import encode

        d = np.abs(self._enc - encode(self.base, spec).astype(np.int16)).sum(axis=1).astype(np.float64)
        j = self.index.get(spec.key())
        if j is not None:
            d[j] = math.inf
        order = np.argsort(d, kind="stable")
        order = order[np.isfinite(d[order])]
        if len(order) == 0:
            return []
        cut = d[order[min(self.neighbours, len(order)) - 1]]
        return [int(i) for i in order if d[i] <= cut]

    def mutate(self, spec: ArchSpec, rng: np.random.Generator) -> ArchSpec:
        """One mutation of ``spec`` in the underlying space (:meth:`SearchSpace.mutate`) if it is
        listed, else one of the :meth:`near` neighbours of ``spec``, uniformly (``spec`` itself
        only when nothing else is listed)."""
        child = self.base.mutate(spec, rng)
        i = self.index.get(child.key())
        if i is not None:
            return self.candidates[i]
        near = self.near(spec)
        if not near:
            return spec
        return self.candidates[near[int(rng.integers(len(near)))]]


class TableEvaluator(Evaluator):
    """Answers each architecture with a stored score and charges its stored cost.

    Args:
        scores: key -> score (higher = better; NaN = a failed measurement).
        seconds: key -> seconds charged per query, or one figure for every architecture.
        measure: the measurement's name (the store's ``measure``).
        identity: what decides the values (the store's settings key is its digest).
        values: key -> extra values reported with the score (e.g. ``{"test_logloss": ...}``).
        train_runs: training runs charged per query.
    """

    def __init__(self, scores: Mapping[str, float], seconds: Mapping[str, float] | float, measure: str,
                 identity: dict[str, Any], values: Mapping[str, dict[str, Any]] | None = None,
                 train_runs: int = 0) -> None:
        super().__init__()
        self.scores = dict(scores)
        self.cost = seconds if isinstance(seconds, Mapping) else None
        self.flat = None if isinstance(seconds, Mapping) else float(seconds)
        self.measure = measure
        self._identity = dict(identity)
        self._values = dict(values or {})
        self.runs = int(train_runs)

    def identity(self) -> dict[str, Any]:
        return self._identity

    def _evaluate(self, specs: list[ArchSpec]) -> list[Measurement]:
        out = []
        for spec in specs:
            k = spec.key()
            if k not in self.scores:
                raise NotInTable(f"evaluator {self.measure!r}: architecture {k} is not in the table "
                                 f"({len(self.scores)} architectures); a tabular search may only pick among them")
            s = float(self.scores[k])
            secs = self.flat if self.cost is None else float(self.cost[k])
            out.append(Measurement(s if math.isfinite(s) else math.nan, secs, dict(self._values.get(k, {})), self.runs))
        return out


def truth_evaluator(keys: Sequence[str], logloss: Sequence[float], seconds: Sequence[float] | float,
                    identity: dict[str, Any] | None = None, train_runs: int = 1) -> TableEvaluator:
    """The ground-truth oracle of a table: score = minus ``logloss`` (reported as ``test_logloss``),
    ``seconds`` charged per query (per architecture, or one figure), ``train_runs`` per query."""
    ll = [float(v) for v in logloss]
    if len(ll) != len(keys):
        raise ValueError(f"truth_evaluator: {len(keys)} keys but {len(ll)} log losses")
    secs: Mapping[str, float] | float
    if isinstance(seconds, (int, float)):
        secs = float(seconds)
    else:
        secs = dict(zip(keys, (float(v) for v in seconds)))
    return TableEvaluator({k: -v for k, v in zip(keys, ll)}, secs, "tabular_truth",
                          identity or {"table": list(keys), "logloss": ll},
                          values={k: {"test_logloss": v} for k, v in zip(keys, ll)}, train_runs=train_runs)
