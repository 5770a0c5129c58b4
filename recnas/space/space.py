"""Search spaces: the choices an architecture may make, loaded from ``spaces/*.yaml``.

A :class:`SearchSpace` is a frozen dataclass of choice lists. It validates, samples and mutates
:class:`~recnas.space.spec.ArchSpec` objects; it never holds an architecture itself. Its views as
arrays for predictors (one-hot vector, graph, tokens) are in :mod:`recnas.space.features`.

Example::

    >>> import numpy as np
    >>> space = SearchSpace.load("tiny")
    >>> arch = space.sample(np.random.default_rng(0))
    >>> space.contains(arch)
    True
    >>> space.contains(space.mutate(arch, np.random.default_rng(1)))
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import yaml

from recnas.space.spec import ArchSpec, BlockSpec, SpecError

__all__ = ["SearchSpace", "DENSE_OPS", "SPARSE_OPS", "READS_SPARSE", "spaces_dir", "available_spaces", "space_of"]

#: Every dense op recnas implements, in canonical order (semantics in ``spaces/README.md``).
DENSE_OPS: tuple[str, ...] = ("fc", "dot", "gating", "sum", "cross")
#: Every sparse op recnas implements, in canonical order.
SPARSE_OPS: tuple[str, ...] = ("efc", "attention")
#: Dense ops that also read the block's sparse input (``fc`` and ``cross`` read only the dense one).
READS_SPARSE: frozenset[str] = frozenset({"dot", "gating", "sum"})

# The per-block choices, in the order mutate() lists them.
_BLOCK_CHOICES: tuple[str, ...] = (
    "dense_op",
    "sparse_op",
    "dense_dim",
    "sparse_dim",
    "dense_in",
    "sparse_in",
    "dense_sparse_interact",
    "deep_fm",
)


def spaces_dir() -> Path:
    """The folder of the space files shipped with recnas (``<repo>/spaces``)."""
    import recnas

    return Path(recnas.__file__).resolve().parents[1] / "spaces"


def available_spaces() -> list[str]:
    """Names of the shipped spaces, e.g. ``['ctr_extended', 'nasrec_full', 'nasrec_small', 'tiny']``."""
    d = spaces_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _int_choices(key: str, v: Any, where: str) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise SpecError(f"{where}: {key}: expected a non-empty list of positive integers, got {v!r}")
    for x in v:
        if not isinstance(x, int) or isinstance(x, bool) or x < 1:
            raise SpecError(f"{where}: {key}: bad dimension {x!r} (dimensions are positive integers)")
    if len(set(v)) != len(v):
        dup = sorted({x for x in v if list(v).count(x) > 1})
        raise SpecError(f"{where}: {key}: duplicate values {dup}")
    return tuple(sorted(v))


def _op_choices(key: str, v: Any, known: tuple[str, ...], where: str) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not v:
        raise SpecError(f"{where}: {key}: expected a non-empty list of op names from {list(known)}, got {v!r}")
    for op in v:
        if op not in known:
            raise SpecError(f"{where}: {key}: unknown op {op!r}; known ops are {list(known)}")
    if len(set(v)) != len(v):
        raise SpecError(f"{where}: {key}: duplicate ops in {list(v)}")
    return tuple(op for op in known if op in v)  # canonical order, so file order does not matter


def _bool_choices(key: str, v: Any, where: str) -> tuple[bool, ...]:
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, bool) for x in v):
        raise SpecError(f"{where}: {key}: expected a non-empty list of true/false, e.g. [false, true]; got {v!r}")
    if len(set(v)) != len(v):
        raise SpecError(f"{where}: {key}: duplicate values in {list(v)}")
    return tuple(sorted(v))  # (False, True) order


@dataclass(frozen=True)
class SearchSpace:
    """The choices of a NASRec-style space of CTR architectures.

    An architecture (:class:`~recnas.space.spec.ArchSpec`) has one ``embedding_dim`` and
    ``num_blocks`` choice blocks; block ``i`` reads nodes ``0..i`` (node 0 is the raw input, node
    ``j >= 1`` the output of block ``j - 1``). Each block chooses every field of
    :class:`~recnas.space.spec.BlockSpec` from the lists below. Op semantics: ``spaces/README.md``.

    Space-file keys (YAML; every one is a field here):

    - ``name`` (str): the space's name; set on every spec it samples. Defaults to the file's stem.
    - ``description`` (str, optional): free text, e.g. where the space comes from.
    - ``num_blocks`` (int >= 1): number of choice blocks ``N`` (NASRec: 7).
    - ``embedding_dims`` (list of int): choices for ``ArchSpec.embedding_dim`` (NASRec: [16]).
    - ``dense_ops`` (list): dense op choices, a subset of ``fc, dot, gating, sum, cross``.
    - ``sparse_ops`` (list): sparse op choices, a subset of ``efc, attention``.
    - ``dense_dims`` (list of int): choices for ``BlockSpec.dense_dim`` (width of the dense output).
    - ``sparse_dims`` (list of int): choices for ``BlockSpec.sparse_dim`` (fields of the sparse output).
    - ``max_connections`` (int >= 1): each block's ``dense_in`` and ``sparse_in`` each connect
      ``1..min(max_connections, i + 1)`` of the nodes ``0..i`` (NASRec: 4).
    - ``dense_sparse_interact`` (list of bool): allowed values of that switch, e.g. ``[false, true]``.
    - ``deep_fm`` (list of bool): allowed values of that switch.

    Integer lists must hold distinct positive integers (stored sorted); op lists distinct known ops
    (stored in canonical order). Any other key, an unknown op or a bad dimension is a
    :class:`~recnas.space.spec.SpecError` naming it and the file.
    """

    name: str
    num_blocks: int
    embedding_dims: tuple[int, ...]
    dense_ops: tuple[str, ...]
    sparse_ops: tuple[str, ...]
    dense_dims: tuple[int, ...]
    sparse_dims: tuple[int, ...]
    max_connections: int
    dense_sparse_interact: tuple[bool, ...]
    deep_fm: tuple[bool, ...]
    description: str = ""
    # The YAML file of a space that is not shipped ("" for shipped ones and spaces built in code);
    # set by load(), written into every spec it makes (ArchSpec.space_file). Not a space-file key.
    file: ClassVar[str] = ""

    def __post_init__(self) -> None:
        where = f"space {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"space: name: expected a non-empty string, got {self.name!r}")
        if not isinstance(self.description, str):
            raise SpecError(f"{where}: description: expected a string, got {self.description!r}")
        for key in ("num_blocks", "max_connections"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{where}: {key}: expected a positive integer, got {v!r}")
        object.__setattr__(self, "embedding_dims", _int_choices("embedding_dims", self.embedding_dims, where))
        object.__setattr__(self, "dense_dims", _int_choices("dense_dims", self.dense_dims, where))
        object.__setattr__(self, "sparse_dims", _int_choices("sparse_dims", self.sparse_dims, where))
        object.__setattr__(self, "dense_ops", _op_choices("dense_ops", self.dense_ops, DENSE_OPS, where))
        object.__setattr__(self, "sparse_ops", _op_choices("sparse_ops", self.sparse_ops, SPARSE_OPS, where))
        for key in ("dense_sparse_interact", "deep_fm"):
            object.__setattr__(self, key, _bool_choices(key, getattr(self, key), where))

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, name_or_path: str | Path) -> SearchSpace:
        """Load a shipped space by name (``"nasrec_small"`` -> ``<repo>/spaces/nasrec_small.yaml``) or a YAML path."""
        p = Path(name_or_path)
        looks_like_path = isinstance(name_or_path, Path) or p.suffix in (".yaml", ".yml") or len(p.parts) > 1
        if not looks_like_path:
            p = spaces_dir() / f"{name_or_path}.yaml"
            if not p.is_file():
                raise SpecError(
                    f"unknown search space {str(name_or_path)!r}; available spaces: {available_spaces()} "
                    f"(in {spaces_dir()}), or give a path to a .yaml file"
                )
        if not p.is_file():
            raise SpecError(f"space file {p} does not exist; available spaces: {available_spaces()}")
        try:
            d = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise SpecError(f"{p}:{line}: not valid YAML: {getattr(e, 'problem', e)}") from None
        if isinstance(d, dict) and "name" not in d:
            d = {**d, "name": p.stem}
        space = cls.from_dict(d, source=str(p))
        if p.resolve() != (spaces_dir() / f"{space.name}.yaml").resolve():
            object.__setattr__(space, "file", str(p.resolve()))  # not shipped: specs say where it is
        return space

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> SearchSpace:
        """Build a space from a mapping of the space-file keys; errors name the key and ``source``."""
        if not isinstance(d, dict):
            raise SpecError(f"{source}: a space file must be a mapping of keys, got {type(d).__name__}")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(map(str, d)) - set(allowed))
        if unknown:
            raise SpecError(f"{source}: unknown keys {unknown}; allowed keys are {allowed}")
        missing = [k for k in allowed if k != "description" and k not in d]
        if missing:
            raise SpecError(f"{source}: missing keys {missing}")
        try:
            return cls(**d)
        except SpecError as e:
            raise SpecError(f"{source}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        """The space as plain YAML/JSON-able data; ``from_dict(to_dict())`` gives an equal space."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    # ------------------------------------------------------------------ validation

    def _n_conn(self, i: int) -> int:
        """Most nodes block ``i`` may connect to on each input."""
        return min(self.max_connections, i + 1)

    def validate(self, spec: ArchSpec) -> None:
        """Raise :class:`SpecError` naming the first choice of ``spec`` outside this space."""
        if not isinstance(spec, ArchSpec):
            raise SpecError(f"expected an ArchSpec, got {type(spec).__name__}")
        if spec.embedding_dim not in self.embedding_dims:
            raise SpecError(
                f"embedding_dim: {spec.embedding_dim} not in {list(self.embedding_dims)} (space {self.name!r})"
            )
        if spec.num_blocks != self.num_blocks:
            raise SpecError(f"blocks: {spec.num_blocks} blocks, space {self.name!r} has {self.num_blocks}")
        allowed: dict[str, tuple[Any, ...]] = {
            "dense_op": self.dense_ops,
            "sparse_op": self.sparse_ops,
            "dense_dim": self.dense_dims,
            "sparse_dim": self.sparse_dims,
            "dense_sparse_interact": self.dense_sparse_interact,
            "deep_fm": self.deep_fm,
        }
        for i, b in enumerate(spec.blocks):
            for key, values in allowed.items():
                v = getattr(b, key)
                if v not in values:
                    shown = [str(x).lower() if isinstance(x, bool) else x for x in values]
                    vv = str(v).lower() if isinstance(v, bool) else v
                    raise SpecError(f"blocks[{i}].{key}: {vv!r} not in {shown} (space {self.name!r})")
            if b.norm != "layernorm":  # the shipped spaces are NASRec's: a LayerNorm after every linear map
                raise SpecError(f"blocks[{i}].norm: {b.norm!r} not in ['layernorm'] (space {self.name!r})")
            for key in ("dense_in", "sparse_in"):
                nodes = getattr(b, key)
                if not 1 <= len(nodes) <= self._n_conn(i):
                    raise SpecError(
                        f"blocks[{i}].{key}: {list(nodes)} connects {len(nodes)} nodes; "
                        f"space {self.name!r} allows 1..{self._n_conn(i)} of nodes 0..{i}"
                    )

    def contains(self, spec: ArchSpec) -> bool:
        """Whether ``spec`` lies in this space."""
        try:
            self.validate(spec)
        except SpecError:
            return False
        return True

    # ------------------------------------------------------------------ sampling

    def _sample_nodes(self, i: int, rng: np.random.Generator) -> tuple[int, ...]:
        k = int(rng.integers(1, self._n_conn(i) + 1))
        return tuple(sorted(int(j) for j in rng.choice(i + 1, size=k, replace=False)))

    def _pick(self, values: tuple[Any, ...], rng: np.random.Generator) -> Any:
        return values[int(rng.integers(len(values)))]

    def sample(self, rng: np.random.Generator) -> ArchSpec:
        """Draw an architecture: each choice uniform over its values.

        A connection set of block ``i`` is drawn by picking its size ``k`` uniformly in
        ``1..min(max_connections, i + 1)`` and then ``k`` distinct nodes of ``0..i`` uniformly.
        """
        blocks = []
        for i in range(self.num_blocks):
            blocks.append(
                BlockSpec(
                    dense_op=self._pick(self.dense_ops, rng),
                    sparse_op=self._pick(self.sparse_ops, rng),
                    dense_dim=self._pick(self.dense_dims, rng),
                    sparse_dim=self._pick(self.sparse_dims, rng),
                    dense_in=self._sample_nodes(i, rng),
                    sparse_in=self._sample_nodes(i, rng),
                    dense_sparse_interact=self._pick(self.dense_sparse_interact, rng),
                    deep_fm=self._pick(self.deep_fm, rng),
                )
            )
        return ArchSpec(embedding_dim=self._pick(self.embedding_dims, rng), blocks=tuple(blocks), space=self.name, space_file=self.file)

    def _choice_values(self, i: int, key: str) -> tuple[Any, ...] | None:
        """The values of a finite per-block choice (None for the connection sets)."""
        return {
            "dense_op": self.dense_ops,
            "sparse_op": self.sparse_ops,
            "dense_dim": self.dense_dims,
            "sparse_dim": self.sparse_dims,
            "dense_sparse_interact": self.dense_sparse_interact,
            "deep_fm": self.deep_fm,
        }.get(key)

    def _n_conn_sets(self, i: int) -> int:
        return sum(math.comb(i + 1, k) for k in range(1, self._n_conn(i) + 1))

    def mutate(self, spec: ArchSpec, rng: np.random.Generator) -> ArchSpec:
        """Return a copy of ``spec`` with exactly one choice redrawn to a different value.

        The choice is uniform over all choices that have more than one value (``embedding_dim``,
        and every field of every block; a connection set counts as one choice); its new value is
        uniform over the other values (a new connection set is drawn as in :meth:`sample` until it
        differs). The result is in the space and differs from ``spec``.
        """
        self.validate(spec)
        slots: list[tuple[int, str]] = []  # (block index or -1, choice name)
        if len(self.embedding_dims) > 1:
            slots.append((-1, "embedding_dim"))
        for i in range(self.num_blocks):
            for key in _BLOCK_CHOICES:
                values = self._choice_values(i, key)
                n = len(values) if values is not None else self._n_conn_sets(i)
                if n > 1:
                    slots.append((i, key))
        if not slots:
            raise SpecError(f"space {self.name!r} holds a single architecture; nothing to mutate")
        i, key = slots[int(rng.integers(len(slots)))]
        if i < 0:
            new = self._pick(tuple(v for v in self.embedding_dims if v != spec.embedding_dim), rng)
            return ArchSpec(embedding_dim=new, blocks=spec.blocks, space=self.name, space_file=self.file)
        block = spec.blocks[i]
        old = getattr(block, key)
        values = self._choice_values(i, key)
        if values is None:
            new = old
            while new == old:
                new = self._sample_nodes(i, rng)
        else:
            new = self._pick(tuple(v for v in values if v != old), rng)
        blocks = list(spec.blocks)
        blocks[i] = BlockSpec(**{**block.to_dict(), key: new})
        return ArchSpec(embedding_dim=spec.embedding_dim, blocks=tuple(blocks), space=self.name, space_file=self.file)

    def largest(self, rng: np.random.Generator) -> ArchSpec:
        """The "full path" used in NASRec's supernet warm-up.

        Ops are drawn uniformly (one per block, as in single-operator sampling); every width is the
        largest choice; each input connects the ``min(max_connections, i + 1)`` most recent nodes;
        each switch is on where the space allows ``true``.
        """
        blocks = []
        for i in range(self.num_blocks):
            recent = tuple(range(i + 1 - self._n_conn(i), i + 1))
            blocks.append(
                BlockSpec(
                    dense_op=self._pick(self.dense_ops, rng),
                    sparse_op=self._pick(self.sparse_ops, rng),
                    dense_dim=self.dense_dims[-1],
                    sparse_dim=self.sparse_dims[-1],
                    dense_in=recent,
                    sparse_in=recent,
                    dense_sparse_interact=True in self.dense_sparse_interact,
                    deep_fm=True in self.deep_fm,
                )
            )
        return ArchSpec(embedding_dim=self.embedding_dims[-1], blocks=tuple(blocks), space=self.name, space_file=self.file)

    def size(self) -> float:
        """Number of distinct architectures in the space (a float: it can exceed 1e20)."""
        total = float(len(self.embedding_dims))
        per_block = (
            len(self.dense_ops)
            * len(self.sparse_ops)
            * len(self.dense_dims)
            * len(self.sparse_dims)
            * len(self.dense_sparse_interact)
            * len(self.deep_fm)
        )
        for i in range(self.num_blocks):
            total *= float(per_block) * float(self._n_conn_sets(i)) ** 2
        return total


def space_of(spec: ArchSpec, space: str | Path | None = None) -> SearchSpace | None:
    """The search space ``spec`` belongs to, loaded, or ``None`` when the spec names none.

    ``space`` (a shipped name or a YAML path, e.g. ``--space``) wins; it must be the space the
    spec names. Otherwise the spec's ``space_file`` is read, else its ``space`` as a shipped name.

    Raises:
        SpecError: the space named cannot be found (saying to pass ``--space FILE``), or ``space``
            is another space than the spec's.
    """
    if space is not None:
        loaded = SearchSpace.load(space)
        if spec.space and spec.space != loaded.name:
            raise SpecError(f"the spec is of space {spec.space!r}, but {space} is space {loaded.name!r}")
        return loaded
    if spec.space_file:
        if not Path(spec.space_file).is_file():
            raise SpecError(
                f"the spec's space file {spec.space_file} (space {spec.space!r}) does not exist; "
                "pass --space FILE with the space's YAML file"
            )
        return space_of(spec, spec.space_file)
    if not spec.space:
        return None
    if spec.space not in available_spaces():
        raise SpecError(
            f"the spec's space {spec.space!r} is not a shipped space ({', '.join(available_spaces())}) and the "
            "spec has no space_file; pass --space FILE with the space's YAML file (the search's pipeline names it)"
        )
    return SearchSpace.load(spec.space)
