"""Test helper: an architecture and its twin (a spec differing only in a choice that does not reach the logit)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from recnas.models.layout import liveness
from recnas.space import SearchSpace
from recnas.space.spec import ArchSpec


def dead_field_twin(spec: ArchSpec) -> ArchSpec | None:
    """``spec`` with one choice that :func:`liveness` finds unread changed (None if every part is live).
    Values stay within the ``tiny`` space's choices (dense 8/16, sparse 4/8)."""
    live, _ = liveness(spec)
    for i, (b, lv) in enumerate(zip(spec.blocks, live)):
        if not lv.sparse_op:  # the block's sparse output is unread: so is its interact switch
            nb = replace(b, sparse_dim=4 if b.sparse_dim == 8 else 8, dense_sparse_interact=not b.dense_sparse_interact)
        elif not lv.dense_op:
            nb = replace(b, dense_dim=8 if b.dense_dim == 16 else 16)
        else:
            continue
        return replace(spec, blocks=spec.blocks[:i] + (nb,) + spec.blocks[i + 1:])
    return None


def with_twin(space: SearchSpace, rng: np.random.Generator) -> tuple[ArchSpec, ArchSpec]:
    """A sample of ``space`` that has a dead part, and its twin."""
    while (twin := dead_field_twin(spec := space.sample(rng))) is None:
        pass
    return spec, twin
