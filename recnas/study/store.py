"""The trial store: one append-only, fsynced JSON-lines file of every measurement of an architecture.

Every search run, and every method that fits a predictor or queries a ground-truth oracle, reads and
writes its history through a :class:`TrialStore` (the model is optuna's storage: one table, samplers
that read it, resume that falls out of it). A record is keyed by

    (architecture key, measurement name, settings identity, seed)

where the *measurement* names what was measured (an estimator's score, ``trained`` for a
train-from-scratch run) and the *settings identity* is :func:`digest` of everything that decides
the value (the estimator's parameters, the scoring data, the supernet's warm-up; or the training
config, data fraction and epochs: the fidelity). Two records with the same key hold the same value,
which is what lets a search reuse any measurement it finds instead of recomputing it.

File layout (schema :data:`SCHEMA`)::

    {"type": "header", "schema": 2, "config": {...}}            what the store's owner pins
    {"type": "asked", "study": "search", "index": 0, "batch": 0, "key": ..., "spec": {...}}
    {"type": "trial", "study": "search", "index": 0, "batch": 0, "key": ..., "spec": {...},
     "measure": "sigeo", "settings": "3f2a...", "seed": null, "score": 1.25,
     "values": {}, "seconds": 0.8, "train_runs": 0, "cached": false}

``asked`` records are proposals written before they are evaluated (optuna's RUNNING trials): a
killed run finds them pending and evaluates them, without asking its strategy again. ``trial``
records are finished measurements; ``study``/``index``/``batch`` are null for measurements no
strategy asked for (e.g. an oracle query). ``score`` is higher = better; ``values`` holds any other
metrics (e.g. ``test_logloss``, ``test_auc``).

Each record is one line, flushed and fsynced before :meth:`TrialStore.append` returns; a reader
(:meth:`TrialStore.refresh`) sees every complete line, so a store is readable while it is written.
A final line without its newline (a write cut short by a kill) is reported and dropped on open.

Schema 1 files (the search journals of recnas before the store) are converted once, in place,
when a search opens them (:func:`convert_v1`; the original is kept as ``journal.v1.jsonl``).

Example::

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "trials.jsonl")
    >>> st = TrialStore.open(p, config={"seed": 0})
    >>> _ = st.append({"type": "trial", "key": "abc", "measure": "params", "settings": digest({}),
    ...                "seed": None, "score": 1.5})
    >>> TrialStore.open(p, config={"seed": 0}).lookup("abc", "params", digest({}))["score"]
    1.5
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from recnas.identity import canon, diff_keys, digest
from recnas.identity import check_identity as _check

__all__ = ["TrialStore", "StoreError", "SCHEMA", "digest", "diff_keys", "check_identity", "convert_v1"]

SCHEMA = 2
RECORD_TYPES = ("asked", "trial")


class StoreError(ValueError):
    """A store that cannot be used: corrupt, of another schema, or written by another configuration."""


def check_identity(stored: Any, current: Any, where: str, hint: str = "use a new output folder, or the same "
                   "configuration to resume") -> None:
    """:func:`recnas.identity.check_identity` with the store's wording; raises :class:`StoreError`."""
    _check(stored, current, where, what="written by a different configuration", hint=hint, error=StoreError)


class TrialStore:
    """An open store file. Use :meth:`open`; the records read so far are :attr:`records`."""

    def __init__(self, path: Path | None, config: dict[str, Any], records: list[dict[str, Any]],
                 offset: int = 0, *, writable: bool = True) -> None:
        self.path = path
        self.config = config
        self.records: list[dict[str, Any]] = []
        self._offset = offset
        self._index: dict[tuple[str, str, str, Any], dict[str, Any]] = {}
        self._fh = open(path, "a", encoding="utf-8") if path is not None and writable else None
        for r in records:
            self._add(r)

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def memory(cls, config: dict[str, Any] | None = None) -> TrialStore:
        """A store that lives in memory only (e.g. on the ranks > 0 of a distributed search)."""
        return cls(None, canon(config or {}), [])

    @classmethod
    def open(cls, path: str | os.PathLike, config: dict[str, Any], *, create: bool = True) -> TrialStore:
        """Opens ``path`` for appending: creates it with a header holding ``config``, or reads it
        back after checking that its header's config equals ``config`` (:func:`check_identity`)."""
        p = Path(path)
        config = canon(config)
        if not p.exists() or p.stat().st_size == 0:
            if not create:
                raise FileNotFoundError(f"no trial store at {p}")
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", encoding="utf-8") as fh:
                fh.write(json.dumps({"type": "header", "schema": SCHEMA, "config": config}, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            return cls(p, config, [], p.stat().st_size)
        records, offset = cls._read(p, repair=True)
        header = records.pop(0)
        cls._check_header(p, header)
        check_identity(header.get("config"), config, str(p))
        return cls(p, config, records, offset)

    @classmethod
    def read(cls, path: str | os.PathLike) -> TrialStore:
        """Opens ``path`` read-only, whatever its config (for reports and tools); a partial last
        line (a write in progress) is skipped, not repaired."""
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no trial store at {p}")
        records, offset = cls._read(p, repair=False)
        header = records.pop(0)
        cls._check_header(p, header)
        return cls(p, header.get("config", {}), records, offset, writable=False)

    @staticmethod
    def _check_header(p: Path, header: dict[str, Any]) -> None:
        if header.get("type") != "header":
            raise StoreError(f"{p}:1: not a recnas trial store (no header line)")
        schema = header.get("schema", header.get("version"))
        if schema == 1:
            raise StoreError(f"{p}: a search journal of schema 1 (recnas before the trial store); "
                             "`recnas search` converts it in place when it resumes that run folder")
        if schema != SCHEMA:
            raise StoreError(f"{p}: trial store schema {schema!r}; this recnas reads schema {SCHEMA}")

    @staticmethod
    def _read(p: Path, repair: bool) -> tuple[list[dict[str, Any]], int]:
        data = p.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        if tail and repair:
            print(f"recnas: {p}: discarding an incomplete last record ({len(tail)} bytes, written when "
                  "the run was killed); that measurement will be made again", file=sys.stderr)
            with open(p, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
        records = []
        for i, line in enumerate(lines, start=1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise StoreError(f"{p}:{i}: corrupt trial store line: {e}") from None
        if not records:
            raise StoreError(f"{p}: empty trial store without a header")
        return records, len(data) - len(tail)

    # -- reading -----------------------------------------------------------------------------------
    def _add(self, r: dict[str, Any]) -> None:
        self.records.append(r)
        if r.get("type") == "trial" and r.get("measure") is not None:
            self._index.setdefault((r["key"], r["measure"], r.get("settings"), r.get("seed")), r)

    def refresh(self) -> int:
        """Reads the complete records appended by others since the last read; returns how many."""
        if self.path is None:
            return 0
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        n = 0
        for line in data[:end].split(b"\n")[:-1]:
            self._add(json.loads(line))
            n += 1
        self._offset += end
        return n

    def lookup(self, key: str, measure: str, settings: str, seed: Any = None) -> dict[str, Any] | None:
        """The first finished record of ``(key, measure, settings, seed)``, or ``None``."""
        return self._index.get((key, measure, settings, seed))

    def trials(self, measure: str | None = None, settings: str | None = None) -> list[dict[str, Any]]:
        """Finished records, in file order, optionally of one measurement and settings identity."""
        return [r for r in self.records if r.get("type") == "trial"
                and (measure is None or r.get("measure") == measure)
                and (settings is None or r.get("settings") == settings)]

    # -- writing -----------------------------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> dict[str, Any]:
        """Writes one record and makes it durable before returning it."""
        if record.get("type") not in RECORD_TYPES:
            raise ValueError(f"trial store: record type must be one of {RECORD_TYPES}, got {record.get('type')!r}")
        rec = canon(record)
        if self._fh is not None:
            line = json.dumps(rec, sort_keys=True) + "\n"
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._offset += len(line.encode())
        self._add(rec)
        return rec

    def add_trial(self, *, key: str, spec: dict[str, Any], measure: str, settings: str, seed: Any, score: float | None,
                  study: str | None, index: int | None = None, batch: int | None = None,
                  values: dict[str, Any] | None = None, seconds: float = 0.0, train_runs: int = 0,
                  cached: bool = False) -> dict[str, Any]:
        """Appends one finished measurement (a ``trial`` record; a non-finite ``score`` is stored as
        ``null``) and returns it: the one place the record's fields are spelled."""
        s = None if score is None else float(score)
        return self.append({
            "type": "trial", "study": study, "index": index, "batch": batch, "key": key, "spec": spec,
            "measure": measure, "settings": settings, "seed": seed,
            "score": s if s is not None and math.isfinite(s) else None, "values": values or {},
            "seconds": float(seconds), "train_runs": int(train_runs), "cached": bool(cached),
        })

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def convert_v1(path: str | os.PathLike, config: dict[str, Any], measure: str, settings: str,
               batch_size: int, study: str = "search") -> int:
    """Converts a schema-1 search journal to the store's schema in place; returns the records kept.

    Schema 1 held a header ``{"type": "header", "version": 1, "config": ...}`` and one
    ``{"type": "trial", index, key, spec, score, seconds, cached}`` per candidate. Each trial gains
    the study name, its ask batch (``index // batch_size``: the old loop asked one generation of
    ``batch_size`` at a time), the measurement name and settings identity; the header gets
    ``config`` (the caller's, already translated to today's keys). The original file is kept beside
    it as ``journal.v1.jsonl``. A partial last line is dropped, as on any open.
    """
    p = Path(path)
    records, _ = TrialStore._read(p, repair=True)
    header = records.pop(0)
    if header.get("type") != "header" or header.get("version") != 1:
        raise StoreError(f"{p}: not a schema-1 search journal")
    out = [json.dumps({"type": "header", "schema": SCHEMA, "config": canon(config),
                       "converted_from": "schema 1"}, sort_keys=True)]
    for r in records:
        if r.get("type") != "trial":
            continue
        rec = {**r, "study": study, "batch": int(r["index"]) // batch_size, "measure": measure,
               "settings": settings, "seed": None, "values": {}, "train_runs": 0}
        out.append(json.dumps(rec, sort_keys=True))
    backup = p.with_name(p.stem + ".v1" + p.suffix)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n")
    shutil.copyfile(p, backup)  # the original first: a kill between the two steps loses nothing
    os.replace(tmp, p)
    return len(out) - 1
