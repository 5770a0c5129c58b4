"""Architecture specs: an architecture is plain, frozen, hashable data.

A spec says, for each of ``N`` choice blocks, which dense and sparse op it runs, their output sizes,
which earlier nodes feed it and the two NASRec switches. Node 0 is the raw input (dense features and
the embedding lookups); node ``j >= 1`` is the output of block ``j - 1``. So block ``i`` may read
nodes ``0..i``. The exact semantics of every op are in ``spaces/README.md``.

Specs know nothing about a search space; ``recnas.space.SearchSpace.validate`` checks one against a
space and names the offending choice.

Example::

    >>> b = BlockSpec("fc", "efc", dense_dim=64, sparse_dim=16, dense_in=(0,), sparse_in=(0,))
    >>> arch = ArchSpec(embedding_dim=16, blocks=(b,))
    >>> ArchSpec.from_json(arch.to_json()) == arch
    True
    >>> len(arch.key())
    16
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["BlockSpec", "ArchSpec", "SpecError", "NORMS"]

#: A block's normalisation (``BlockSpec.norm``): ``layernorm`` (NASRec's ``use_layernorm=1``, the
#: default: a LayerNorm after every linear map of the block's ops and switches) or ``none`` (no
#: LayerNorm after them; attention's own two LayerNorms stay, they are part of that op).
NORMS: tuple[str, ...] = ("layernorm", "none")


class SpecError(ValueError):
    """An architecture spec that is malformed or lies outside its search space."""


def _as_tuple(name: str, v: Any) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        if len(set(v)) != len(v):
            raise SpecError(f"{name}: node indices must be distinct, got {list(v)}")
        return tuple(sorted(v))
    raise SpecError(f"{name}: expected a list of node indices, got {v!r}")


@dataclass(frozen=True)
class BlockSpec:
    """One choice block.

    Attributes:
        dense_op: ``fc`` | ``dot`` | ``gating`` | ``sum`` | ``cross`` (see ``spaces/README.md``).
        sparse_op: ``efc`` | ``attention``.
        dense_dim: width of the dense output ``(B, dense_dim)``.
        sparse_dim: number of fields of the sparse output ``(B, sparse_dim, e)`` before the
            ``dense_sparse_interact`` field is appended.
        dense_in: sorted node indices whose dense outputs are concatenated into the dense input.
        sparse_in: sorted node indices whose sparse outputs are concatenated (along the field axis)
            into the sparse input.
        dense_sparse_interact: append one field ``Linear(dense_out) -> e`` to the sparse output.
        deep_fm: add ``Linear(FM(sparse_out))`` to the dense output.
        norm: ``layernorm`` (default) or ``none``, see :data:`NORMS`. Not written by ``to_dict``
            (so not in the key) at its default, so every spec made before the option keeps its
            serialisation and hash.
    """

    dense_op: str
    sparse_op: str
    dense_dim: int
    sparse_dim: int
    dense_in: tuple[int, ...]
    sparse_in: tuple[int, ...]
    dense_sparse_interact: bool = False
    deep_fm: bool = False
    norm: str = "layernorm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dense_in", _as_tuple("dense_in", self.dense_in))
        object.__setattr__(self, "sparse_in", _as_tuple("sparse_in", self.sparse_in))
        for name in ("dense_dim", "sparse_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("dense_op", "sparse_op"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(f"{name}: expected an op name, got {getattr(self, name)!r}")
        for name in ("dense_sparse_interact", "deep_fm"):
            if not isinstance(getattr(self, name), bool):
                raise SpecError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if not self.dense_in or not self.sparse_in:
            raise SpecError("dense_in and sparse_in must each name at least one node")
        if self.norm not in NORMS:
            raise SpecError(f"norm: expected one of {list(NORMS)}, got {self.norm!r}")

    @property
    def sparse_out_fields(self) -> int:
        return self.sparse_dim + int(self.dense_sparse_interact)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["dense_in"] = list(self.dense_in)
        d["sparse_in"] = list(self.sparse_in)
        if self.norm == NORMS[0]:
            del d["norm"]  # the default stays out of the serialisation and the key
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "block") -> BlockSpec:
        if not isinstance(d, dict):
            raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise SpecError(f"{where}: unknown keys {unknown}; allowed keys are {sorted(allowed)}")
        missing = sorted({"dense_op", "sparse_op", "dense_dim", "sparse_dim", "dense_in", "sparse_in"} - set(d))
        if missing:
            raise SpecError(f"{where}: missing keys {missing}")
        try:
            return cls(**d)
        except SpecError as e:
            raise SpecError(f"{where}: {e}") from None


@dataclass(frozen=True)
class ArchSpec:
    """A whole architecture: embedding width plus a stack of blocks.

    Attributes:
        embedding_dim: width ``e`` of every embedding (and of every sparse tensor in the network).
        blocks: the choice blocks, in order; block ``i`` reads nodes ``0..i``.
        space: name of the search space the spec was drawn from (not in the key).
        space_file: the space's YAML file (absolute path) when it is not a shipped space, so that
            every command can find it (``recnas.space.space.space_of``); not in the key, and not
            written when empty.
    """

    embedding_dim: int
    blocks: tuple[BlockSpec, ...]
    space: str = ""
    space_file: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.embedding_dim, int) or isinstance(self.embedding_dim, bool) or self.embedding_dim < 1:
            raise SpecError(f"embedding_dim: expected a positive integer, got {self.embedding_dim!r}")
        if not isinstance(self.space, str):
            raise SpecError(f"space: expected a space name (string), got {self.space!r}")
        if not isinstance(self.space_file, str):
            raise SpecError(f"space_file: expected a path (string), got {self.space_file!r}")
        if not isinstance(self.blocks, (list, tuple)):
            raise SpecError(f"blocks: expected a list of blocks, got {type(self.blocks).__name__}")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if not self.blocks:
            raise SpecError("blocks: an architecture needs at least one block")
        for i, b in enumerate(self.blocks):
            if not isinstance(b, BlockSpec):
                raise SpecError(f"blocks[{i}]: expected a BlockSpec, got {type(b).__name__}")
            for name in ("dense_in", "sparse_in"):
                bad = [j for j in getattr(b, name) if j < 0 or j > i]
                if bad:
                    raise SpecError(
                        f"blocks[{i}].{name}: nodes {bad} are not earlier nodes (allowed 0..{i})"
                    )

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "space": self.space,
            "embedding_dim": self.embedding_dim,
            "blocks": [b.to_dict() for b in self.blocks],
        }
        if self.space_file:
            d["space_file"] = self.space_file
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        if not isinstance(d, dict):
            raise SpecError(f"architecture: expected a mapping, got {type(d).__name__}")
        allowed = {"space", "space_file", "embedding_dim", "blocks"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise SpecError(f"architecture: unknown keys {unknown}; allowed keys are {sorted(allowed)}")
        if "blocks" not in d or "embedding_dim" not in d:
            raise SpecError("architecture: missing keys; 'embedding_dim' and 'blocks' are required")
        if not isinstance(d["blocks"], list):
            raise SpecError("blocks: expected a list of blocks")
        blocks = tuple(BlockSpec.from_dict(b, where=f"blocks[{i}]") for i, b in enumerate(d["blocks"]))
        return cls(embedding_dim=d["embedding_dim"], blocks=blocks, space=d.get("space", ""),
                   space_file=d.get("space_file", ""))

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> ArchSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SpecError(f"architecture: not valid JSON: {e}") from None

    def key(self) -> str:
        """A stable 16-hex-digit hash of the architecture (space name excluded), for dedup and resume."""
        d = self.to_dict()
        d.pop("space")
        d.pop("space_file", None)
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]
