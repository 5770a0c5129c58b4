"""Featurizers: architectures as arrays for predictors (one-hot vector, graph, token sequence).

Each featurizer is a function of the search space and a list of specs. The encodings themselves
are defined on :class:`~recnas.space.SearchSpace` for now (``encode``, ``graph``, ``tokens``); this
module is the entry point predictors use.

Example::

    >>> from recnas.space import SearchSpace
    >>> import numpy as np
    >>> space = SearchSpace.load("tiny")
    >>> specs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    >>> onehot(space, specs).shape == (3, space.encoding_size)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from recnas.space.space import SearchSpace
    from recnas.space.spec import ArchSpec

__all__ = ["onehot", "graphs", "tokens", "FEATURIZERS", "featurize"]


def onehot(space: SearchSpace, specs: Sequence[ArchSpec]) -> np.ndarray:
    """``(n, space.encoding_size)`` float32: the one-hot / multi-hot encoding of each spec."""
    return np.stack([space.encode(s) for s in specs]) if specs else np.zeros((0, space.encoding_size), np.float32)


def graphs(space: SearchSpace, specs: Sequence[ArchSpec]) -> tuple[np.ndarray, np.ndarray]:
    """``(adjacency (n, V, V), node features (n, V, F))`` float32."""
    pairs = [space.graph(s) for s in specs]
    V, F = space.graph_num_nodes, space.graph_feature_size
    if not pairs:
        return np.zeros((0, V, V), np.float32), np.zeros((0, V, F), np.float32)
    return np.stack([a for a, _ in pairs]), np.stack([x for _, x in pairs])


def tokens(space: SearchSpace, specs: Sequence[ArchSpec]) -> np.ndarray:
    """``(n, space.token_length)`` int64 token ids (0 = padding)."""
    return np.asarray([space.tokens(s) for s in specs], dtype=np.int64).reshape(len(specs), space.token_length)


FEATURIZERS = {"onehot": onehot, "graph": graphs, "tokens": tokens}


def featurize(kind: str, space: SearchSpace, specs: Sequence[ArchSpec]):
    """``FEATURIZERS[kind](space, specs)``; an unknown kind lists the known ones."""
    if kind not in FEATURIZERS:
        raise ValueError(f"unknown featurizer {kind!r}; known featurizers are {sorted(FEATURIZERS)}")
    return FEATURIZERS[kind](space, specs)
