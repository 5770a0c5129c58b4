"""recnas.space: search spaces (``SearchSpace``) and architecture specs (``ArchSpec``, ``BlockSpec``).

An architecture is plain data; a space lists the choices it may make and validates, samples and
mutates architectures. Shipped spaces live in ``<repo>/spaces/*.yaml``. :mod:`recnas.space.features`
turns architectures into arrays for predictors (one-hot vector, graph, token sequence).
"""

from recnas.space import features
from recnas.space.space import DENSE_OPS, SPARSE_OPS, SearchSpace, available_spaces, spaces_dir
from recnas.space.spec import ArchSpec, BlockSpec, SpecError

__all__ = [
    "ArchSpec",
    "BlockSpec",
    "SpecError",
    "SearchSpace",
    "DENSE_OPS",
    "SPARSE_OPS",
    "available_spaces",
    "spaces_dir",
    "features",
]
