"""A predictor that learns from the zero-cost signals: gradient-boosted trees on proxy scores.

NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022 Datasets and Benchmarks) found that
zero-cost proxies carry complementary information: a model fitted on a few measured architectures,
with the proxies' scores as its features, ranks better than any one proxy. ``zc_gbt`` is that
model here: scikit-learn's ``GradientBoostingRegressor`` on

* the score of every proxy column of a :class:`ProxyTable` (by default all of them: in the bench,
  every zero-cost / one-shot estimator in every context it was scored in, SiGeo's three raw terms
  from its ablation, ``params`` and ``flops``), and
* the one-hot encoding of the architecture (``onehot=True``; ``onehot=False`` gives the proxies-only
  model, which asks whether the proxies alone carry the information).

The proxy scores are *label-free*: they are computed from an architecture and the training rows
(fresh or supernet-inherited weights), never from a ground-truth result. So a held-out
architecture's proxy scores may be read at prediction time, exactly as a zero-cost estimator reads
them when it is judged; only the training architectures' targets are labels. Rows are matched to
architectures by :meth:`recnas.space.spec.ArchSpec.key`, never by position.

Where the scores come from: ``scores=`` is a :class:`ProxyTable`, a ``pandas`` frame with a
``key`` column, or the path of a ``scores.csv`` written by ``recnas bench compare``
(ground-truth columns such as ``test_logloss_*`` are dropped on reading, never features).
``recnas bench compare`` and ``recnas bench sweep`` hand their own table to every predictor entry
whose class sets ``uses_scores`` and whose ``scores`` is unset, so the scores are the cached ones,
not recomputed.

Example::

    >>> import numpy as np, pandas as pd
    >>> from recnas.estimators import make_estimator
    >>> from recnas.space import SearchSpace
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(12)]
    >>> size = np.array([float(s.blocks[0].dense_dim) for s in specs])
    >>> table = pd.DataFrame({"key": [s.key() for s in specs], "params | none": size})
    >>> p = make_estimator("zc_gbt", scores=table, n_estimators=20).fit(specs, size, space=space)
    >>> p.predict(specs[:2]).shape
    (2,)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from recnas.predictors.trees import GradientBoosting

if TYPE_CHECKING:
    from recnas.space.space import SearchSpace
    from recnas.space.spec import ArchSpec

__all__ = ["ProxyTable", "ZeroCostGBT", "TRUTH_PREFIXES"]

#: columns of a score table that are labels or identifiers, never features.
TRUTH_PREFIXES = ("test_", "val_", "train_")
ID_COLUMNS = ("arch", "key")


def _is_truth(column: str) -> bool:
    return str(column).startswith(TRUTH_PREFIXES)


class ProxyTable:
    """Label-free proxy scores of architectures: one row per architecture key, one column per score.

    Args:
        scores: a frame with a ``key`` column (architecture keys) and one column per proxy score;
            ``arch`` and ground-truth columns (``test_*``, ``val_*``, ``train_*``) are dropped.
        source: where the scores come from, for messages (e.g. a file's path).

    >>> t = ProxyTable(pd.DataFrame({"key": ["a", "b"], "params | none": [1.0, 2.0], "test_logloss_mean": [0.5, 0.4]}))
    >>> t.columns
    ['params | none']
    """

    def __init__(self, scores: pd.DataFrame, source: str = "the proxy score table") -> None:
        if "key" not in scores.columns:
            raise ValueError(f"{source}: no 'key' column (the architectures' keys)")
        keys = scores["key"].astype(str)
        dup = keys[keys.duplicated()]
        if len(dup):
            raise ValueError(f"{source}: architecture {dup.iloc[0]!r} has more than one row")
        cols = [c for c in scores.columns if c not in ID_COLUMNS and not _is_truth(c)]
        self.frame = scores[cols].apply(pd.to_numeric, errors="coerce").astype(np.float64)
        self.frame.index = pd.Index(keys, name="key")
        self.source = source

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> ProxyTable:
        """A ``scores.csv`` of ``recnas bench compare`` (or any CSV with a ``key`` column)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such proxy score file")
        return cls(pd.read_csv(p), source=str(p))

    @classmethod
    def from_vectors(cls, keys: Sequence[str], vectors: Mapping[str, Any], source: str = "the bench's scores") -> ProxyTable:
        """``label -> (n,)`` score vectors of the architectures ``keys`` (in that order)."""
        n = len(keys)
        for label, v in vectors.items():
            if np.shape(v) != (n,):
                raise ValueError(f"{source}: estimator {label!r} has {np.shape(v)} scores for {n} architectures")
        return cls(pd.DataFrame({"key": list(keys), **{k: np.asarray(v, dtype=np.float64) for k, v in vectors.items()}}),
                   source=source)

    @property
    def columns(self) -> list[str]:
        return list(self.frame.columns)

    def select(self, proxies: Sequence[str] | None, who: str = "predictor") -> list[str]:
        """The columns named by ``proxies`` (all columns when ``None``), in the table's order.

        Each entry is a column label (``"snip | fresh"``), an estimator name matching that estimator
        in every context (``"snip"``), or a shell pattern over either (``"* | inherit 10%"``). An
        entry that matches nothing raises, naming it; a ground-truth column raises too.
        """
        if proxies is None:
            chosen = self.columns
        else:
            if isinstance(proxies, str):
                proxies = [proxies]
            wanted: set[str] = set()
            for p in proxies:
                if _is_truth(p) or p in ID_COLUMNS:
                    raise ValueError(f"{who}: {p!r} is a ground-truth or identifier column, not a proxy score")
                hit = [c for c in self.columns if fnmatchcase(c, p) or fnmatchcase(c.partition(" | ")[0], p)]
                if not hit:
                    raise ValueError(f"{who}: no proxy scores of estimator {p!r} in {self.source}; "
                                     f"its columns are {self.columns}")
                wanted.update(hit)
            chosen = [c for c in self.columns if c in wanted]
        if not chosen:
            raise ValueError(f"{who}: {self.source} has no proxy score column")
        return chosen

    def matrix(self, specs: Sequence[ArchSpec], columns: Sequence[str], who: str = "predictor") -> np.ndarray:
        """``(len(specs), len(columns))`` float64: each spec's row, found by its key.

        Raises ``ValueError`` naming the first architecture without a row, or the first estimator
        (column) whose score is missing or not finite for a requested architecture.
        """
        keys = [s.key() for s in specs]
        missing = [k for k in keys if k not in self.frame.index]
        if missing:
            raise ValueError(f"{who}: no proxy scores for {len(missing)} of {len(keys)} architectures in "
                             f"{self.source} (first: {missing[0]}); score them with every proxy first")
        absent = [c for c in columns if c not in self.frame.columns]
        if absent:
            raise ValueError(f"{who}: no proxy scores of estimator {absent[0]!r} in {self.source}")
        M = self.frame.loc[keys, list(columns)].to_numpy(dtype=np.float64)
        bad = ~np.isfinite(M)
        if bad.any():
            j = int(np.flatnonzero(bad.any(axis=0))[0])
            raise ValueError(f"{who}: proxy scores of estimator {columns[j]!r} are missing (not finite) for "
                             f"{int(bad[:, j].sum())} of {len(keys)} architectures in {self.source}")
        return M


class ZeroCostGBT(GradientBoosting):
    """Gradient-boosted trees on proxy scores (+ the one-hot encoding): see the module docstring.

    Args:
        n_estimators, learning_rate, max_depth, subsample, min_samples_leaf, seed: scikit-learn's
            ``GradientBoostingRegressor`` (as ``gbt``).
        onehot: append the one-hot encoding to the proxy scores (False: proxies only).
        proxies: which proxy columns (see :meth:`ProxyTable.select`); ``None``: all of them.
        scores: the proxy scores: a :class:`ProxyTable`, a frame with a ``key`` column, or the path
            of a ``scores.csv``; ``None`` until the bench hands over its table.
        space: the search space (name or file) for the one-hot encoding when ``fit`` is not given one.
    """

    name = "zc_gbt"
    #: the bench hands this predictor its table of proxy scores (``scores``) when unset.
    uses_scores: ClassVar[bool] = True

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        subsample: float = 1.0,
        min_samples_leaf: int = 1,
        seed: int = 0,
        onehot: bool = True,
        proxies: Sequence[str] | None = None,
        scores: Any = None,
        space: Any = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_samples_leaf = min_samples_leaf
        self.seed = seed
        self.onehot = onehot
        self.proxies = proxies
        self.scores = scores
        self.space = space

    def proxy_table(self) -> ProxyTable:
        """``scores`` as a :class:`ProxyTable` (raises when unset)."""
        s = self.scores
        if s is None:
            raise ValueError(
                f"predictor {self.name!r}: no proxy scores (scores=): pass a scores.csv of `recnas bench compare`, "
                "a frame with a 'key' column, or a ProxyTable; `recnas bench compare` and `sweep` pass theirs"
            )
        if isinstance(s, ProxyTable):
            return s
        if isinstance(s, pd.DataFrame):
            return ProxyTable(s)
        if isinstance(s, (str, os.PathLike)):
            return ProxyTable.read_csv(s)
        raise ValueError(f"predictor {self.name!r}: scores= must be a ProxyTable, a DataFrame or a path, "
                         f"got {type(s).__name__}")

    def _space(self, space: SearchSpace | None) -> SearchSpace | None:
        if not self.onehot and space is None and getattr(self, "space", None) is None:
            return None  # proxies only: no encoding, so no space needed
        return super()._space(space)

    def fit(self, specs: Sequence[ArchSpec], y: Sequence[float], space: SearchSpace | None = None) -> ZeroCostGBT:
        """Fits on measured architectures (``y`` higher = better); the proxy columns are fixed here."""
        table = self.proxy_table()
        self.proxy_table_ = table
        self.proxy_columns_ = table.select(self.proxies, f"predictor {self.name!r}")
        super().fit(specs, y, space=space)
        return self

    def features(self, specs: Sequence[ArchSpec], space: SearchSpace | None = None) -> np.ndarray:
        """``(n, proxy columns [+ one-hot size])``: the proxy scores of ``specs`` (by key), then the encoding."""
        from recnas.space.features import featurize

        table = getattr(self, "proxy_table_", None) or self.proxy_table()
        columns = getattr(self, "proxy_columns_", None) or table.select(self.proxies, f"predictor {self.name!r}")
        X = table.matrix(specs, columns, f"predictor {self.name!r}")
        if self.onehot:
            X = np.concatenate([X, featurize("onehot", self._space(space), list(specs)).astype(np.float64)], axis=1)
        return X

    def feature_names(self) -> list[str]:
        """The fitted model's feature names: the proxy columns, then ``onehot[i]``."""
        self._check_fitted("name its features")
        names = list(self.proxy_columns_)
        if self.onehot:
            from recnas.space.features import encoding_size

            names += [f"onehot[{i}]" for i in range(encoding_size(self.space_))]
        return names
