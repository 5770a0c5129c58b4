"""NAS-LID (He et al., AAAI 2023) on the CTR supernet: split the supernet into sub-supernets of ops
that shape the data alike, measured by the local intrinsic dimension (LID) of the blocks' outputs.

- :mod:`recnas.lid.estimator`: the MLE LID of a batch (duplicate rows removed first).
"""

from recnas.lid.estimator import distinct_rows, lid_mle, lid_per_point

__all__ = ["distinct_rows", "lid_mle", "lid_per_point"]
