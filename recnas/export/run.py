"""Exporting the best architectures of a search run: :func:`export_run` (``recnas export``).

Reads the run folder ``recnas search`` writes (``recnas/search/runner.py``)::

    RUN_DIR/journal.jsonl     header + one {"type": "trial", index, key, spec, score, ...} per candidate
    RUN_DIR/supernet.json     the warmed-up supernet (or RUN_DIR/supernet/supernet.json)
    RUN_DIR/data.json         {"prepared": "<prepared folder>"} (recorded in the manifests)
    RUN_DIR/pipeline.yaml     the resolved pipeline (its sha256 is recorded)
    RUN_DIR/retrain/*/result.json   optional from-scratch retraining of the top candidates

Ranking: architectures retrained from scratch come first, by retrained test log loss (lower is
better); the others follow by search score (higher is better). Each architecture counts once (its
best score). Candidates with a non-finite score are not exported (reported on stderr).

Output::

    OUT_DIR/01-<key>/ ... OUT_DIR/K-<key>/   one export folder each (``recnas.export.artifact``)
    OUT_DIR/index.json                      rank, key, score, retrained metrics, folder
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from recnas.export.artifact import export_model
from recnas.space.spec import ArchSpec, SpecError

__all__ = ["export_run", "rank_run", "read_trials", "estimate_export_bytes", "INDEX_FILE"]

INDEX_FILE = "index.json"
JOURNAL_FILE = "journal.jsonl"


def read_trials(run_dir: Path, study: str = "search") -> list[dict[str, Any]]:
    """The measured records of ``study`` in ``RUN_DIR/journal.jsonl`` (the run's trial store; the
    search's candidates by default, ``retrain`` for its retrainings); a corrupt line is an error
    naming file:line.

    A last line without its newline (a record cut short when the search was killed) is skipped with
    a note on stderr, as ``recnas search --resume`` would rescore it.
    """
    p = Path(run_dir) / JOURNAL_FILE
    if not p.exists():
        raise FileNotFoundError(f"{run_dir} is not a search run folder: {p} is missing")
    lines = p.read_bytes().split(b"\n")
    tail = lines.pop()
    if tail:
        print(f"recnas: {p}: ignoring an incomplete last record ({len(tail)} bytes)", file=sys.stderr)
    trials = []
    for i, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i}: corrupt journal line: {e}") from None
        if i == 1 and rec.get("type") != "header":
            raise ValueError(f"{p}:1: not a recnas search journal (no header line)")
        if rec.get("type") == "trial" and rec.get("study", "search") == study:
            missing = [k for k in (("index",) if study == "search" else ()) + ("key", "spec", "score") if k not in rec]
            if missing:
                raise ValueError(f"{p}:{i}: trial record without {missing}")
            trials.append(rec)
    return trials


def _retrained(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``{key: {"test_logloss", "test_auc", "val_logloss", "val_auc", "file"}}`` of retrained candidates:
    the store's ``retrain`` records, else (run folders of recnas before the trial store) the
    retraining folders' ``result.json``."""
    out: dict[str, dict[str, Any]] = {}
    for r in read_trials(run_dir, study="retrain"):
        v = r.get("values") or {}
        if not math.isfinite(float(v.get("test_logloss", math.nan))):
            raise ValueError(f"{run_dir / JOURNAL_FILE}: retraining of {r['key']} without a finite test log loss")
        out.setdefault(r["key"], {k: v.get(k) for k in ("test_logloss", "test_auc", "val_logloss", "val_auc")}
                       | {"file": str(run_dir / JOURNAL_FILE)})
    if out:
        return out
    for f in sorted((run_dir / "retrain").glob("*/result.json")):
        try:
            r = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{f}: not valid JSON: {e}") from None
        key = (r.get("describe") or {}).get("key") or f.parent.name.rsplit("-", 1)[-1]
        test, val = r.get("test"), r.get("val")
        if not test or "logloss" not in test:
            raise ValueError(f"{f}: a retraining result without test metrics (an unfinished retraining?)")
        out[key] = {
            "test_logloss": test["logloss"],
            "test_auc": test.get("auc"),
            "val_logloss": (val or {}).get("logloss"),
            "val_auc": (val or {}).get("auc"),
            "file": str(f),
        }
    return out


def rank_run(run_dir: Path) -> list[dict[str, Any]]:
    """Every distinct architecture of a run with a finite score, best first (see the module doc).

    Each entry is the trial record with the best score of that key, plus ``"retrain"`` (the
    retrained metrics or ``None``).
    """
    run_dir = Path(run_dir)
    trials = read_trials(run_dir)
    best: dict[str, dict[str, Any]] = {}
    bad = 0
    for t in trials:
        s = t["score"]
        if s is None or not math.isfinite(float(s)):
            bad += 1
            continue
        if t["key"] not in best or s > best[t["key"]]["score"]:
            best[t["key"]] = t
    if bad:
        print(f"recnas export: {bad} candidate(s) of {run_dir} with a non-finite score are not exported", file=sys.stderr)
    retrained = _retrained(run_dir)
    ranked = [{**t, "retrain": retrained.get(k)} for k, t in best.items()]
    ranked.sort(
        key=lambda t: (0, t["retrain"]["test_logloss"], t["index"]) if t["retrain"] else (1, -t["score"], t["index"])
    )
    return ranked


def _load_run_supernet(run_dir: Path):  # -> Supernet
    from recnas.train.warmup import SUPERNET_FILE, load_supernet

    for d in (run_dir, run_dir / "supernet"):
        if (d / SUPERNET_FILE).exists():
            return load_supernet(d)
    raise FileNotFoundError(
        f"{run_dir}: no warmed-up supernet ({run_dir / SUPERNET_FILE} or {run_dir / 'supernet' / SUPERNET_FILE})"
    )


def _sha256(p: Path) -> str | None:
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def ranking_sha256(run_dir: Path) -> str:
    """SHA-256 of what the export's ranking reads from the run's trial store: the search's measured
    candidates and the retrainings (other records, e.g. the final training's, do not change it)."""
    recs = {"search": read_trials(run_dir), "retrain": read_trials(run_dir, study="retrain")}
    return hashlib.sha256(json.dumps(recs, sort_keys=True).encode()).hexdigest()


EXPORT_OVERHEAD = 1 << 20  # bytes per export beyond its weights (measured 0.34-0.40 MB in the tiny space)


def estimate_export_bytes(net, spec: ArchSpec) -> int:  # net: Supernet
    """An upper estimate of one export folder's size: its weights twice (``weights.pt`` and
    ``model.pt2`` each hold them, in float32) plus :data:`EXPORT_OVERHEAD` for the program, the json
    files and the archives' headers. Measured in the tests: within 2 % + 1 MiB above the real size."""
    tables = sum(f.num_embeddings for f in net.feature_map.sparse) * spec.embedding_dim * 4
    dense = sum(v.numel() * 4 for v in net.extract_dense(spec).state_dict().values())
    return int(2 * (tables + dense) * 1.02) + EXPORT_OVERHEAD


def free_bytes(folder: Path) -> int:
    """Free bytes on the filesystem that ``folder`` (or its nearest existing parent) is on."""
    p = Path(folder).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Removes the temporary folders of exports killed while writing (``.NAME.tmp-PID`` of a dead PID)."""
    if not out_dir.is_dir():
        return
    for p in out_dir.glob(".*.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if not p.is_dir() or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # its process is alive: another export is writing it
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            continue


def export_run(run_dir: Path, top: int, out_dir: Path, force: bool = False) -> list[Path]:
    """Exports the ``top`` best distinct architectures of a search run with their inherited weights.

    Distinct as models: a candidate whose spec differs from a better-ranked one only in choices that
    do not reach the logit (the same :func:`~recnas.models.layout.functional_key`: it would build the
    same model) is skipped and listed in ``index.json``'s ``twins_skipped`` with the key it twins.

    Each is extracted from the run's warmed-up supernet (``Supernet.extract``) and written by
    :func:`~recnas.export.artifact.export_model` to ``out_dir/<rank:02d>-<key>/``; the manifest's
    ``meta`` records the source run, rank, trial index, score and retrained metrics. Writes
    ``out_dir/index.json``. Returns the export folders, best first (fewer than ``top`` if the run
    has fewer distinct architectures).

    The exports' size is estimated first (:func:`estimate_export_bytes`); when it exceeds the free
    space of ``out_dir``'s filesystem nothing is written and a ``ValueError`` says how much is needed
    and free, unless ``force``. Each export folder appears whole or not at all (written to a
    temporary folder, then renamed); a write that fails (a full disk) raises ``OSError`` naming
    the file, after removing that temporary folder. ``index.json`` is written last.
    """
    if top < 1:
        raise ValueError(f"export: --top must be >= 1, got {top}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ranked = rank_run(run_dir)
    if not ranked:
        raise ValueError(f"{run_dir / JOURNAL_FILE}: no scored candidates to export")
    net = _load_run_supernet(run_dir)
    data_file = run_dir / "data.json"
    data = json.loads(data_file.read_text()).get("prepared") if data_file.exists() else None
    source = {
        "kind": "search",
        "run_dir": str(run_dir.resolve()),
        "pipeline_sha256": _sha256(run_dir / "pipeline.yaml"),
        "journal_sha256": _sha256(run_dir / JOURNAL_FILE),
        "ranking_sha256": ranking_sha256(run_dir),
        "data": data,
        "candidates": len(ranked),
    }
    from recnas.models.layout import functional_key

    chosen, specs, twins, seen = [], [], [], {}
    for t in ranked:
        if len(chosen) == top:
            break
        try:
            spec = ArchSpec.from_dict(t["spec"])
        except SpecError as e:
            raise ValueError(f"{run_dir / JOURNAL_FILE}: trial {t['index']}: bad spec: {e}") from None
        if spec.key() != t["key"]:
            raise ValueError(f"{run_dir / JOURNAL_FILE}: trial {t['index']}: key {t['key']} does not match its spec ({spec.key()})")
        fkey = functional_key(spec)
        if fkey in seen:  # differs from a better-ranked one only in choices that do not reach the logit
            twins.append({"key": spec.key(), "trial_index": t["index"], "score": t["score"], "twin_of": seen[fkey]})
            continue
        seen[fkey] = spec.key()
        chosen.append(t)
        specs.append(spec)
    sizes = [estimate_export_bytes(net, spec) for spec in specs]
    free = free_bytes(out_dir)
    if sum(sizes) > free and not force:
        raise ValueError(
            f"export: {len(specs)} export(s) need about {_mb(sum(sizes))} ({_mb(min(sizes))} to {_mb(max(sizes))} each: "
            f"weights.pt and model.pt2 each hold the weights) but {out_dir}'s filesystem has {_mb(free)} free; "
            "export fewer (--top), free space, or pass --force to write anyway"
        )
    _remove_stale_temporaries(out_dir)
    paths, index = [], []
    for rank, (t, spec) in enumerate(zip(chosen, specs), start=1):
        model = net.extract(spec)
        meta = {
            "source": source,
            "rank": rank,
            "trial_index": t["index"],
            "score": t["score"],
            "retrain": t["retrain"],
            "weights": "inherited from the warmed-up supernet",
        }
        path = export_model(model, spec, net.feature_map, out_dir / f"{rank:02d}-{spec.key()}", meta)
        paths.append(path)
        index.append({"rank": rank, "key": spec.key(), "score": t["score"], "retrain": t["retrain"],
                      "trial_index": t["index"], "folder": path.name,
                      "num_params": model.num_params(), "flops_per_example": model.flops_per_example()})
    tmp = out_dir / (INDEX_FILE + ".tmp")
    tmp.write_text(json.dumps({"source": source, "exports": index, "twins_skipped": twins}, indent=2) + "\n")
    os.replace(tmp, out_dir / INDEX_FILE)
    return paths
