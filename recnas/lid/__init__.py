"""NAS-LID (He et al., AAAI 2023) on the CTR supernet: split the supernet into sub-supernets of ops
that shape the data alike, measured by the local intrinsic dimension (LID) of the blocks' outputs;
GM-NAS (similarity of gradients) as the comparison.

- :mod:`recnas.lid.estimator`: the MLE LID of a batch (duplicate rows removed first).
- :mod:`recnas.lid.split`: LID vectors, op signatures, the bipartition, :func:`split_supernet` and
  :class:`SplitSupernet` (sub-supernets over shared tables; a candidate is scored by the one holding it).
"""

from recnas.lid.estimator import distinct_rows, lid_mle, lid_per_point
from recnas.lid.split import (
    Region,
    SplitConfig,
    SplitRecord,
    SplitSupernet,
    best_bipartition,
    finetune,
    lid_vector,
    split_supernet,
)

__all__ = [
    "distinct_rows",
    "lid_mle",
    "lid_per_point",
    "Region",
    "SplitConfig",
    "SplitRecord",
    "SplitSupernet",
    "best_bipartition",
    "finetune",
    "lid_vector",
    "split_supernet",
]
