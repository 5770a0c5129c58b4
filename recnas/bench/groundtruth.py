"""The ground truth: N sampled architectures, each trained from scratch for every seed.

``build(cfg)`` samples ``cfg.num_archs`` distinct architectures (seeded; distinct by
``spec.key()``; the first k of a larger N are the same k), trains each with
``recnas.train.trainer.train`` for every seed in ``cfg.train.seeds``, and after each finished
(architecture, seed) rewrites ``OUTPUT/groundtruth.parquet`` atomically with one more row:

======================  ==========================================================
column                  meaning
======================  ==========================================================
``arch``                index of the architecture in the sampled order
``key``                 ``spec.key()``
``spec``                the spec as JSON
``seed``                training seed
``val_logloss/auc``     validation log loss / AUC after training (NaN with ``train.validate: false``)
``test_logloss/auc``    test log loss / AUC after training
``params``              parameters of the dense part (``num_params(False)``)
``params_total``        parameters including the embedding tables
``flops``               FLOPs per example (``flops_per_example()``)
``steps``               optimizer steps
``train_seconds``       wall time of the training (the last segment, if resumed)
``samples_per_s``       training throughput
``device``              where the run trained: ``cpu``, or ``cuda (<GPU name>)``; empty in rows of
                        builds made before the column existed (``train.device``)
``finished_at``         UNIX time the row was recorded
======================  ==========================================================

Every row is first a ``trained`` measurement in the build's trial store ``OUTPUT/trials.jsonl``
(:mod:`recnas.study`; header: the build signature; one record per (architecture, seed), keyed by the
recipe, data and ops identity and the seed, ``study: bench``, ``index``: the architecture); the
table is the view of those records that ``bench compare`` and the reports read. A build made before
the store (a table without ``trials.jsonl``) is taken into a new store once when it is resumed.

The table is kept sorted by ``(arch, seed)``. A killed build resumes: finished rows are never
retrained; an architecture that was being trained continues from its last checkpoint
(``train.checkpoint_every``). A run's folder (``OUTPUT/runs/<arch>-<key>-s<seed>``) is deleted once
its row is recorded (or, if the build was killed in between, when the build is resumed). The fault
point ``bench.row`` (:mod:`recnas.faults`) is passed right after each row is durably recorded.

``train.workers > 1`` trains that many runs at once, each in its own spawned process (a world of one
over an in-memory store, so workers share no ports) with ``train.threads`` torch threads; on CUDA
(``train.device``) the workers share the one GPU. Only the
parent process writes the table, once per finished run in completion order; the rows are those of
``workers: 1`` (every run is seeded), only the timings differ. If a run fails, nothing more is
started, the runs in progress finish and are recorded, then the error is raised. A worker whose build
process dies (e.g. killed) exits within a second, so a resumed build never shares a run folder with it.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recnas.bench.config import BenchConfig, build_signature
from recnas.faults import fault_point
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec

__all__ = ["sample_archs", "build", "import_rows", "read_table", "truth_matrix", "TABLE_FILE", "BUILD_FILE", "COLUMNS",
           "STORE_FILE", "open_store", "measurement_settings"]

TABLE_FILE = "groundtruth.parquet"
STORE_FILE = "trials.jsonl"
BUILD_FILE = "build.json"
COLUMNS = (
    "arch", "key", "spec", "seed", "val_logloss", "val_auc", "test_logloss", "test_auc", "params",
    "params_total", "flops", "steps", "train_seconds", "samples_per_s", "device", "finished_at",
)
#: columns a table or trial store of an earlier build may lack (filled with NaN)
OPTIONAL_COLUMNS = ("device", "finished_at")


def sample_archs(space: SearchSpace, n: int, seed: int, max_tries: int = 100) -> list[ArchSpec]:
    """``n`` distinct architectures of ``space`` drawn in order from ``default_rng(seed)``.

    Duplicates (same ``spec.key()``) are redrawn, so the first ``k`` of ``sample_archs(space, n, s)``
    are ``sample_archs(space, k, s)``. Raises if the space is too small to give ``n`` distinct ones.
    """
    rng = np.random.default_rng(seed)
    specs: list[ArchSpec] = []
    seen: set[str] = set()
    misses = 0
    while len(specs) < n:
        spec = space.sample(rng)
        if spec.key() in seen:
            misses += 1
            if misses > max_tries * n:
                raise ValueError(f"space {space.name!r} gave only {len(specs)} distinct architectures, {n} asked for")
            continue
        seen.add(spec.key())
        specs.append(spec)
    return specs


def read_table(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The ground-truth rows recorded so far (an empty frame with the columns if none)."""
    p = Path(out_dir) / TABLE_FILE
    if not p.exists():
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    # One open file: the build replaces the table atomically while others may read it, and a path
    # lets pyarrow open it twice (footer, then pages), possibly across a replacement.
    with open(p, "rb") as fh:
        return pd.read_parquet(fh)


def _write_table(out_dir: Path, df: pd.DataFrame) -> None:
    tmp = out_dir / (TABLE_FILE + ".tmp")
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / TABLE_FILE)


def measurement_settings(cfg: BenchConfig) -> str:
    """The store's settings key of this benchmark's training runs: the recipe, the data and the
    ops' version (the seed is the record's own key), as the search's oracle and retraining make it."""
    from recnas.identity import digest
    from recnas.train.scratch import trained_identity

    return digest(trained_identity(cfg.train, cfg.data.identity()))


def _record(store: Any, cfg: BenchConfig, settings: str, row: dict[str, Any]) -> dict[str, Any]:
    metrics = {k: row[k] for k in COLUMNS if k not in ("arch", "key", "spec", "seed")}
    return store.add_trial(key=row["key"], spec=json.loads(row["spec"]), measure="trained", settings=settings,
                           seed=int(row["seed"]), score=-float(metrics["test_logloss"]), study="bench",
                           index=int(row["arch"]), values=metrics, seconds=float(metrics["train_seconds"]),
                           train_runs=1)


def _table(store: Any) -> pd.DataFrame:
    """The table view of the store's ground-truth records (sorted by arch, seed)."""
    rows = [{"arch": r["index"], "key": r["key"], "spec": ArchSpec.from_dict(r["spec"]).to_json(), "seed": r["seed"],
             **r["values"]} for r in store.records if r.get("type") == "trial" and r.get("study") == "bench"]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in COLUMNS})
    df = pd.DataFrame(rows).reindex(columns=list(COLUMNS))  # stores of earlier builds lack OPTIONAL_COLUMNS
    return df.sort_values(["arch", "seed"], kind="stable", ignore_index=True)


def open_store(cfg: BenchConfig, source: str = "pipeline") -> Any:
    """The build's trial store (created, or checked against the build signature); rows of a table
    written before the store are taken in once."""
    from recnas.study import TrialStore
    from recnas.study.store import StoreError

    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    try:
        store = TrialStore.open(out / STORE_FILE, build_signature(cfg))
    except StoreError as e:
        raise ValueError(f"{source}: {e}") from None
    have = {(r["key"], r["seed"]) for r in store.records if r.get("study") == "bench"}
    old = read_table(out)
    settings = measurement_settings(cfg)
    for row in old.to_dict("records"):
        if (row["key"], int(row["seed"])) not in have:
            _record(store, cfg, settings, row)
    return store


def truth_matrix(df: pd.DataFrame, keys: list[str], seeds: tuple[int, ...], column: str = "test_logloss") -> np.ndarray:
    """``(len(keys), len(seeds))`` matrix of ``column``; raises naming what is missing."""
    pivot = df.pivot_table(index="key", columns="seed", values=column, aggfunc="first")
    missing = [(k, s) for k in keys for s in seeds if k not in pivot.index or s not in pivot.columns or pd.isna(pivot.at[k, s])]
    if missing:
        raise ValueError(
            f"the ground-truth table lacks {len(missing)} of {len(keys) * len(seeds)} (architecture, seed) "
            f"rows (first: {missing[0]}); run `recnas bench build` on this pipeline first"
        )
    return pivot.loc[keys, list(seeds)].to_numpy(dtype=np.float64)


def import_rows(cfg: BenchConfig, src: str | os.PathLike, source: str = "pipeline") -> int:
    """Adds the finished rows of an earlier build of the same pipeline to ``cfg.output``'s table.

    ``src`` is a folder holding that build's ``build.json`` and its table, as ``groundtruth.parquet``
    or ``groundtruth.csv`` (what a report folder keeps), e.g. to extend a committed benchmark with
    more seeds on another machine. The settings must be the pipeline's (``build.json`` equal to
    :func:`recnas.bench.config.build_signature`), every row's architecture must be the pipeline's
    architecture of that index, and each (architecture, seed) may appear once. Rows the output
    table already has are kept as they are. Returns the number of rows added.
    """
    src = Path(src)
    sig_path = src / BUILD_FILE
    if not sig_path.is_file():
        raise FileNotFoundError(
            f"{src}: no {BUILD_FILE}; rows whose training settings are unknown cannot be mixed into a ground truth"
        )
    from recnas.identity import check_identity

    check_identity(json.loads(sig_path.read_text()), build_signature(cfg), f"{source}: {sig_path}",
                   what="was built with different settings", hint="import rows of the same pipeline settings only")
    for name in (TABLE_FILE, "groundtruth.csv"):
        path = src / name
        if path.is_file():
            rows = read_table(src) if name == TABLE_FILE else pd.read_csv(path)
            break
    else:
        raise FileNotFoundError(f"{src}: neither {TABLE_FILE} nor groundtruth.csv is there")
    missing = [c for c in COLUMNS if c not in rows.columns and c not in OPTIONAL_COLUMNS]
    if missing:
        raise ValueError(f"{path}: columns {missing} are missing")
    for c in OPTIONAL_COLUMNS:
        if c not in rows.columns:
            rows[c] = float("nan")
    rows = rows[list(COLUMNS)]
    specs = sample_archs(SearchSpace.load(cfg.space), cfg.num_archs, cfg.sample_seed)
    for line, r in zip(range(2, len(rows) + 2), rows.itertuples(index=False)):
        where = f"{path}: row {line - 1}" if name == TABLE_FILE else f"{path}:{line}"
        i = int(r.arch)
        if not 0 <= i < len(specs):
            raise ValueError(f"{where}: architecture index {i} is outside this pipeline's num_archs {len(specs)} "
                             f"(0-{len(specs) - 1}); raise num_archs, or import a folder with only those rows")
        if specs[i].key() != r.key or ArchSpec.from_json(r.spec).key() != r.key:
            raise ValueError(f"{where}: architecture {i} ({r.key}) is not this pipeline's architecture {i}")
    dup = rows.duplicated(["key", "seed"])
    if dup.any():
        r = rows[dup].iloc[0]
        raise ValueError(f"{path}: architecture {int(r['arch'])} seed {int(r['seed'])} appears more than once")
    out = Path(cfg.output)
    _check_signature(out, build_signature(cfg), source)
    with open_store(cfg, source) as store:
        have = {(r["key"], r["seed"]) for r in store.records if r.get("study") == "bench"}
        new = rows[[(k, int(s)) not in have for k, s in zip(rows["key"], rows["seed"])]]
        settings = measurement_settings(cfg)
        for row in new.to_dict("records"):
            _record(store, cfg, settings, row)
        if len(new) or not (out / TABLE_FILE).exists():
            _write_table(out, _table(store))
    return len(new)


@dataclass(frozen=True)
class _Data:
    data_dir: Path
    feature_map: Any
    splits: dict[str, Path]


def _check_signature(out: Path, signature: dict[str, Any], source: str) -> None:
    from recnas.identity import check_identity

    p = out / BUILD_FILE
    if p.exists():
        check_identity(json.loads(p.read_text()), signature, source,
                       what=f"{out} holds a ground truth built with different settings",
                       hint="use a new output folder or the same data/space/sample_seed/train settings")
    else:
        out.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(signature, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, p)


def device_label(device: Any) -> str:
    """The ``device`` column of a row trained on ``device``: ``cpu``, or ``cuda (<GPU name>)``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def _train_one(cfg: BenchConfig, d: _Data, spec: ArchSpec, seed: int, run_dir: Path, env: Any) -> dict[str, Any]:
    from recnas.train.scratch import train_from_scratch

    row = train_from_scratch(spec, seed, cfg.train, d.data_dir, d.feature_map, d.splits, run_dir, env)
    return {**row, "device": device_label(env.device)}


def _flush_denormal_enabled() -> bool:
    """Whether this process treats denormal floats as zero (``torch.set_flush_denormal`` has no getter)."""
    import torch

    return bool((torch.tensor([1e-40], dtype=torch.float32) * 1.0).item() == 0.0)


def _sendable(e: Exception) -> Exception:
    """``e`` if it survives pickling, else a ``RuntimeError`` with its type name and message.

    A worker's error travels to the parent pickled; one that cannot be rebuilt from its message
    (``NonFiniteLossError(message, step, checkpoint)``: a diverged run) would fail to unpickle there,
    which breaks the whole pool and kills the runs in progress.
    """
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


def _exit_with_parent() -> None:
    """Worker initializer: ends this worker process as soon as the build process that spawned it dies
    (e.g. ``kill -9``); an orphan would go on writing checkpoints into a run folder that the resumed
    build trains too."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # waits on the parent's sentinel
        os._exit(1)

    threading.Thread(target=watch, name="recnas-bench-parent-watch", daemon=True).start()


def _train_worker(cfg: BenchConfig, data_dir: str, spec_json: str, seed: int, run_dir: str,
                  flush_denormal: bool, device: str | None = None) -> dict[str, Any]:
    """One (architecture, seed) run in a worker process of ``build`` (``train.workers > 1``) on
    ``device`` (``cpu`` or ``cuda``; ``None``: as ``RECNAS_DEVICE`` says)."""
    import torch

    from recnas.data.loader import load_prepared
    from recnas.train.cli import quiet_libraries
    from recnas.train.distributed import init_distributed

    quiet_libraries()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if flush_denormal:
        torch.set_flush_denormal(True)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):  # a world of one, whatever started the parent
        os.environ.pop(k, None)
    try:
        env = init_distributed(device=device)
        fm, splits = load_prepared(Path(data_dir))
        return _train_one(cfg, _Data(Path(data_dir), fm, splits), ArchSpec.from_json(spec_json), seed, Path(run_dir), env)
    except Exception as e:
        sendable = _sendable(e)
        if sendable is e:
            raise
        raise sendable from e  # the original's traceback text still reaches the parent


def build(cfg: BenchConfig, source: str = "pipeline", progress: bool = True) -> pd.DataFrame:
    """Trains every (architecture, seed) of ``cfg`` that the output table lacks; returns the table.

    Args:
        cfg: the benchmark pipeline.
        source: the pipeline file's name, for error messages.
        progress: a line per finished (architecture, seed) on stderr.
    """
    import torch

    from recnas.data.loader import load_prepared
    from recnas.pipeline import resolve_data
    from recnas.train.distributed import init_distributed

    device = cfg.train.resolve_device(source)  # before any work: a GPU pipeline on a CPU host stops here
    out = Path(cfg.output)
    _check_signature(out, build_signature(cfg), source)
    space = SearchSpace.load(cfg.space)
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    data_dir = Path(resolve_data(cfg.data, progress=progress)).resolve()
    fm, splits = load_prepared(data_dir)
    d = _Data(data_dir, fm, splits)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    (out / "archs.jsonl").write_text("".join(s.to_json() + "\n" for s in specs))

    store = open_store(cfg, source)
    df = _table(store)
    if len(df) != len(read_table(out)):  # the store holds rows the view lacks (killed in between)
        _write_table(out, df)
    settings = measurement_settings(cfg)
    done = {(k, int(s)) for k, s in zip(df["key"], df["seed"])}
    todo = [(i, spec, seed) for i, spec in enumerate(specs) for seed in cfg.train.seeds if (spec.key(), seed) not in done]
    total = len(specs) * len(cfg.train.seeds)
    if progress:
        print(f"recnas bench build: {total - len(todo)} of {total} (architecture, seed) rows done, "
              f"{len(todo)} to train on {device} -> {out / TABLE_FILE}", file=sys.stderr, flush=True)
    t_start = time.perf_counter()
    n_done = 0

    def run_dir(i: int, spec: ArchSpec, seed: int) -> Path:
        return out / "runs" / f"{i:04d}-{spec.key()}-s{seed}"

    # a build killed between recording a row and removing its run folder left that folder behind
    for i, spec in enumerate(specs):
        for seed in cfg.train.seeds:
            if (spec.key(), seed) in done:
                shutil.rmtree(run_dir(i, spec, seed), ignore_errors=True)

    def record(i: int, spec: ArchSpec, seed: int, result: dict[str, Any]) -> None:
        """Adds a finished run's row, rewrites the table, removes the run's folder, reports."""
        nonlocal df, n_done
        row = {"arch": i, "key": spec.key(), "spec": spec.to_json(), "seed": int(seed)}
        row.update(result)
        row["finished_at"] = time.time()
        _record(store, cfg, settings, row)  # durable first: the table is its view
        df = _table(store)
        _write_table(out, df)
        fault_point("bench.row")  # the row is durable; a kill here leaves only the run folder behind
        shutil.rmtree(run_dir(i, spec, seed), ignore_errors=True)
        n_done += 1
        if progress:
            elapsed = time.perf_counter() - t_start
            eta = elapsed / n_done * (len(todo) - n_done)
            print(
                f"[{total - len(todo) + n_done}/{total}] arch {i} {spec.key()} seed {seed}: "
                f"test logloss {row['test_logloss']:.5f} auc {row['test_auc']:.4f} | "
                f"{row['params']:,} params {row['flops']:,} FLOPs | {row['train_seconds']:.1f} s "
                f"({row['samples_per_s']:,.0f} samples/s) | eta {eta / 60:.1f} min",
                file=sys.stderr, flush=True,
            )

    try:
        if cfg.train.workers == 1:
            env = init_distributed(device=device)
            for i, spec, seed in todo:
                record(i, spec, seed, _train_one(cfg, d, spec, seed, run_dir(i, spec, seed), env))
        elif todo:
            _build_parallel(cfg, data_dir, todo, run_dir, record, device)
    finally:
        store.close()
    if (out / "runs").is_dir() and not any((out / "runs").iterdir()):
        (out / "runs").rmdir()
    return df


def _build_parallel(
    cfg: BenchConfig,
    data_dir: Path,
    todo: list[tuple[int, ArchSpec, int]],
    run_dir: Callable[[int, ArchSpec, int], Path],
    record: Callable[[int, ArchSpec, int, dict[str, Any]], None],
    device: str,
) -> None:
    """Trains ``todo`` in ``cfg.train.workers`` spawned processes, ``record``ing each run as it finishes.

    A run is submitted only when a worker is free (``ProcessPoolExecutor`` would otherwise queue one
    more than it runs, marked running and so not cancellable). After a failed run nothing more is
    started; the runs in progress finish and are recorded; then the first failure is raised again
    (same type where it takes one message) naming its architecture and seed.
    """
    flush = _flush_denormal_enabled()
    pending = list(reversed(todo))  # pop() takes them in order
    running: dict[Future, tuple[int, ArchSpec, int]] = {}
    failed: tuple[int, ArchSpec, int, BaseException] | None = None
    workers = min(cfg.train.workers, len(todo))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_exit_with_parent) as pool:
        while running or (pending and failed is None):
            while pending and failed is None and len(running) < workers:
                i, spec, seed = job = pending.pop()
                fut = pool.submit(_train_worker, cfg, str(data_dir), spec.to_json(), int(seed),
                                  str(run_dir(i, spec, seed)), flush, device)
                running[fut] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: (running[f][0], running[f][2])):
                i, spec, seed = running.pop(fut)
                err = fut.exception()
                if err is None:
                    record(i, spec, seed, fut.result())
                elif failed is None:
                    failed = (i, spec, seed, err)
    if failed is not None:
        i, spec, seed, err = failed
        where = f"arch {i} {spec.key()} seed {seed}"
        try:
            again = type(err)(f"{where}: {err}")
        except Exception:  # an exception type that does not take one message
            again = RuntimeError(f"{where}: {type(err).__name__}: {err}")
        raise again from err
