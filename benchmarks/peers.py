"""Peer benchmark: deepctr-torch's models beside recnas's baselines, on exactly the same rows.

    .venv/bin/pip install -e '.[peers]'        # deepctr-torch 0.3.0 (an optional extra)
    .venv/bin/python benchmarks/peers.py PREPARED_DIR [--models wdl deepfm dcn dcnmix autoint]
        [--seeds 0 1 2] [--epochs 1] [--batch-size 512] [--baselines dlrm deepfm dcnv2 deepfm_lib dcn_lib]
        [--exports [LABEL=]EXPORT_DIR ...] [--fraction F] [--embedding-dim 16] [--dense-lr LR] [--table-lr LR]
        [--out CSV] [--threads N]
    .venv/bin/python benchmarks/peers.py PREPARED_DIR --from-csv A.csv B.csv [--out CSV]   # merge runs

``PREPARED_DIR`` is a folder written by ``recnas data prepare``. Both sides read its parquet splits:

- **Rows.** recnas's production trainer trains whole batches only (its loader drops the last partial
  batch), so both sides train on the first ``M = (K // batch) * batch`` rows of the training split,
  where ``K = N`` or, with ``--fraction F``, ``K = round(F * N)`` -- the first rows recnas's loader
  keeps for ``fraction: F`` (a search's ``final.fraction``, ``recnas train --fraction``). The split is
  a seeded random sample of the raw rows, so its first rows are a random subset. The recnas runs get
  ``fraction = M / N``, deepctr-torch gets those M rows. (recnas's own ``fraction: F`` run would
  shuffle the K rows and leave out a random partial batch of ``K - M < batch`` rows each epoch;
  here no row is left out, so both sides see exactly the same M rows.)
  Before training, the script reads the three splits through recnas's own loader
  (``recnas.data.loader.ParquetBatchLoader``) and checks that it yields the identical labels, dense
  values and ids that deepctr-torch is given; after training it checks the rows recnas trained on
  (steps x batch size) and scored (validation / test rows). The output's ``rows`` line says both
  sides' counts and whether they agree; the CSV has them per run. Every run is evaluated on the
  whole validation and test splits.
- **Inputs.** Sparse features: the ids recnas already hashed / encoded, one ``SparseFeat`` per
  feature with ``vocabulary_size`` = the feature map's ``num_embeddings``. Dense features: the
  values as recnas transformed them (e.g. ``log1p``), one ``DenseFeat(name, 1)`` each. Every
  feature feeds both the linear and the deep part (``linear_feature_columns`` =
  ``dnn_feature_columns``, as in deepctr-torch's Criteo example).

**deepctr-torch settings** (version 0.3.0; read from its source). Each model is built with its
constructor's defaults, ``task="binary"``, ``device="cpu"`` and ``seed`` = the run's seed (deepctr
calls ``torch.manual_seed(seed)`` in the constructor, which fixes the initialisation and the
``DataLoader`` shuffling), then ``compile("adagrad", "binary_crossentropy")`` and
``fit(x, y, batch_size=B, epochs=E, shuffle=True, verbose=0)``:

- optimizer: ``torch.optim.Adagrad`` with torch's defaults (lr 0.01, eps 1e-10, no weight decay)
  over all parameters, dense (non-sparse) embeddings; the loss is the batch's *summed* binary
  cross-entropy plus L2 terms over the whole tables (``l2_reg_embedding`` 1e-5,
  ``l2_reg_linear`` 1e-5, except AutoInt: linear part off);
- initialisation: ``init_std`` 1e-4 (normal) for embeddings and the linear part;
- WDL, DeepFM: DNN (256, 128), relu, no dropout, no batch norm; DeepFM with the FM term;
- DCN: 2 cross layers, ``cross_parameterization="vector"``, DNN (128, 128), ``l2_reg_cross`` 1e-5;
- DCN-Mix: 2 cross layers, ``low_rank`` 32, ``num_experts`` 4, DNN (128, 128);
- AutoInt: 3 attention layers, 2 heads, residual, DNN (256, 128);
- embedding dim: ``--embedding-dim`` (default **16**, the width of recnas's baselines and the
  setting issue 16 used; deepctr-torch's own ``SparseFeat`` default is 4);
- batch size ``--batch-size`` (default 512, as issue 16; ``fit``'s default is 256), epochs
  ``--epochs`` (default 1).

Predictions are ``model.predict`` probabilities; test and validation log loss / AUC are
``sklearn.metrics.log_loss`` / ``roc_auc_score`` on the whole split, per seed.

**recnas settings.** Each baseline trains as ``recnas train --baseline NAME --data PREPARED_DIR
--epochs E --batch-size B --seed S --fraction M/N`` does: ``recnas.export.train_baseline(NAME, ...,
config=ProdTrainConfig(epochs=E, batch_size=B, seed=S, fraction=M/N))`` with the trainer's default
learning rates (dense Adagrad ``recnas.train.trainer.DENSE_LR``, row-wise Adagrad tables
``recnas.train.defaults.TABLE_LR``; ``--dense-lr`` / ``--table-lr`` override them, as the CLI's
flags do). Its metrics are the ones ``recnas train`` reports (log loss from the logits, sklearn
AUC), on the whole validation and test splits. ``--exports`` adds exported architectures (the
folders ``recnas search`` exports, ``RUN/export/...``), each trained from fresh weights as
``recnas train EXPORT_DIR --data PREPARED_DIR ...`` trains it (``recnas.export.train_export``,
``init="scratch"``) with the same settings and rows as the baselines; ``LABEL=DIR`` names its row
(default: the folder's name). Run folders go to a temporary folder (or
``--work DIR``) and are deleted after each run (a trained export is ~170 MB at hash size 100k).

**Cost.** deepctr-torch's tables are dense parameters: every step updates (Adagrad) and
L2-penalises all of them, 26 x 100,000 x (16 + 1) = 44M values at hash size 100k, so on one CPU
thread a step takes ~0.7-2 s whatever the batch (measured here: 10 min per model and seed on 160k
rows; recnas's DLRM 12 s). Run the deepctr-torch models and the recnas baselines as two processes
(``--baselines`` / ``--models`` with no names) and merge their CSVs with ``--from-csv``.

``--from-csv`` trains nothing: it merges the per-run CSVs of earlier invocations on the same
PREPARED_DIR (e.g. the deepctr-torch models and the recnas baselines run as two processes side by
side; the CSVs must share epochs and batch size), re-checks the rows against PREPARED_DIR and prints
the one table.

Output: one table (model, seeds, mean +- sample std over seeds of test log loss and AUC, validation
log loss, training seconds), sorted by test log loss; ``--out CSV`` gets one row per (model, seed)
(rewritten after every run, so a run cut short keeps what it finished) and ``CSV``'s
``_summary.csv`` sibling the table. Exit status 0; 1 if a run failed or the row counts disagree;
2 for a usage error (e.g. deepctr_torch not installed).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

DEEPCTR_MODELS = {"wdl": "WDL", "deepfm": "DeepFM", "dcn": "DCN", "dcnmix": "DCNMix", "autoint": "AutoInt"}
RECNAS_NAMES = {"dlrm": "DLRM", "deepfm": "DeepFM-like", "dcnv2": "DCN-v2-like",
                "deepfm_lib": "DeepFM (library structure)", "dcn_lib": "DCN (library structure)"}
INSTALL_HINT = "pip install -e '.[peers]'"
EVAL_BATCH = 4096
PROG = "benchmarks/peers.py"


class UsageError(Exception):
    """A one-line error for the user (exit status 2)."""


# -- data -----------------------------------------------------------------------------------------
@dataclass
class Split:
    """One split's rows: ``label (n,)`` float32, ``dense (n, num_dense)`` float32, ``ids (n, num_sparse)`` int64."""

    label: np.ndarray
    dense: np.ndarray
    ids: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.label)

    def head(self, n: int) -> Split:
        return Split(self.label[:n], self.dense[:n], self.ids[:n])


def read_split(split_dir: Path, fm: Any) -> Split:
    """All rows of a split, in the order recnas's loader reads them (sorted part files, row groups in order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(split_dir.glob("part-*.parquet"))
    if not files:
        raise UsageError(f"{split_dir}: no part-*.parquet files")
    cols = ["label", *fm.dense_names, *fm.sparse_names]
    t = pa.concat_tables([pq.read_table(f, columns=cols) for f in files])
    label = t.column("label").to_numpy().astype(np.float32)
    dense = np.stack([t.column(n).to_numpy().astype(np.float32) for n in fm.dense_names], axis=1) \
        if fm.dense_names else np.zeros((t.num_rows, 0), np.float32)
    ids = np.stack([t.column(n).to_numpy().astype(np.int64) for n in fm.sparse_names], axis=1)
    return Split(label, dense, ids)


def recnas_loader_rows(split_dir: Path, fm: Any, *, fraction: float | None, batch_size: int, drop_last: bool) -> Split:
    """The rows recnas's ``ParquetBatchLoader`` yields for a split (unshuffled), as arrays."""
    from recnas.data.loader import ParquetBatchLoader

    loader = ParquetBatchLoader(split_dir, fm, batch_size=batch_size, shuffle=False, drop_last=drop_last, fraction=fraction)
    labels, dense, ids = [], [], []
    for b in loader:
        n = b.labels.shape[0]
        labels.append(b.labels.numpy())
        dense.append(b.dense_features.numpy())
        ids.append(b.sparse_features.values().reshape(len(fm.sparse_names), n).t().numpy())  # key-major
    cat = lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape)  # noqa: E731
    return Split(cat(labels, (0,)), cat(dense, (0, fm.num_dense)), cat(ids, (0, fm.num_sparse)).astype(np.int64))


def same_rows(a: Split, b: Split) -> bool:
    return a.rows == b.rows and np.array_equal(a.label, b.label) and np.array_equal(a.dense, b.dense) \
        and np.array_equal(a.ids, b.ids)


# -- deepctr-torch --------------------------------------------------------------------------------
def _no_version_check(*args: Any, **kwargs: Any) -> Any:
    return SimpleNamespace(status_code=0, text="")


def import_deepctr() -> Any:
    """``(deepctr_torch.models, deepctr_torch.inputs)``; raises :class:`UsageError` when not installed.

    ``import deepctr_torch`` starts a thread that asks PyPI for a newer release
    (``deepctr_torch.utils.check_version``, through ``requests.get``); ``requests.get`` is replaced
    in this process so the benchmark makes no network call (and cannot wait on one at exit).
    """
    try:
        import requests

        requests.get = _no_version_check
        import deepctr_torch
        from deepctr_torch import inputs, models
    except ImportError as e:
        raise UsageError(f"deepctr_torch is not installed (cannot import {e.name or e}); install the peers extra: {INSTALL_HINT}") from e
    if deepctr_torch.__version__ != "0.3.0":
        print(f"{PROG}: note: deepctr_torch {deepctr_torch.__version__} (the settings in the docstring are 0.3.0's)",
              file=sys.stderr)
    return models, inputs


def deepctr_inputs(fm: Any, s: Split) -> dict[str, np.ndarray]:
    x = {n: s.ids[:, j] for j, n in enumerate(fm.sparse_names)}
    x.update({n: s.dense[:, j] for j, n in enumerate(fm.dense_names)})
    return x


def train_deepctr(key: str, fm: Any, train: Split, valid: Split, test: Split, *, seed: int, epochs: int,
                  batch_size: int, embedding_dim: int, deepctr: Any) -> dict[str, Any]:
    from sklearn.metrics import log_loss, roc_auc_score

    models, inputs = deepctr
    cols = [inputs.SparseFeat(n, vocabulary_size=fm.num_embeddings[n], embedding_dim=embedding_dim) for n in fm.sparse_names]
    cols += [inputs.DenseFeat(n, 1) for n in fm.dense_names]
    chatter = io.StringIO()  # deepctr prints the device and "Train on N samples ..." even at verbose=0
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(chatter):
        model = getattr(models, DEEPCTR_MODELS[key])(cols, cols, task="binary", device="cpu", seed=seed)
        model.compile("adagrad", "binary_crossentropy")
        model.fit(deepctr_inputs(fm, train), train.label, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {"train_rows": train.rows, "steps": epochs * math.ceil(train.rows / batch_size),
                           "train_seconds": seconds, "params": sum(p.numel() for p in model.parameters())}
    for name, s in (("val", valid), ("test", test)):
        p = model.predict(deepctr_inputs(fm, s), batch_size=EVAL_BATCH).reshape(-1)
        if not np.isfinite(p).all():
            raise FloatingPointError(f"{int((~np.isfinite(p)).sum())} non-finite predictions on the {name} split")
        out[f"{name}_logloss"] = float(log_loss(s.label, p, labels=[0, 1]))
        out[f"{name}_auc"] = float(roc_auc_score(s.label, p)) if 0 < s.label.sum() < s.rows else math.nan
        out[f"{name}_rows"] = s.rows
    return out


# -- recnas ---------------------------------------------------------------------------------------
def train_recnas(name: str, data_dir: Path, work: Path, *, seed: int, epochs: int, batch_size: int, fraction: float,
                 dense_lr: float | None, table_lr: float | None) -> dict[str, Any]:
    """One baseline as ``recnas train --baseline NAME`` trains it (or, for ``name = "export:DIR"``, an
    export as ``recnas train DIR`` does); the run folder is deleted afterwards."""
    from recnas.export import ProdTrainConfig, train_baseline, train_export

    lrs = {k: v for k, v in (("dense_lr", dense_lr), ("table_lr", table_lr)) if v is not None}
    config = ProdTrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, fraction=fraction, progress=False, **lrs)
    export = Path(name[len("export:"):]) if name.startswith("export:") else None
    out_dir = work / f"{export.name if export else name}-seed{seed}"
    shutil.rmtree(out_dir, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        if export is not None:  # as `recnas train EXPORT_DIR` trains it: fresh weights
            r = train_export(export, data_dir, out_dir=out_dir, init="scratch", config=config, resume=False)
        else:
            r = train_baseline(name, data_dir, out_dir=out_dir, config=config, resume=False)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    wall = time.perf_counter() - t0
    b = r.best
    if r.status != "completed" or b is None:
        raise RuntimeError(f"recnas {name}: training ended with status {r.status!r}")
    train_s = sum(h.train_seconds for h in r.history)
    return {
        "train_rows": r.steps * batch_size // epochs, "steps": r.steps, "train_seconds": train_s if math.isfinite(train_s) else wall,
        "params": r.model.get("num_params"),
        "val_logloss": b.val_logloss, "val_auc": b.val_auc, "val_rows": b.val_rows,
        "test_logloss": b.test_logloss, "test_auc": b.test_auc, "test_rows": b.test_rows,
        "dense_lr": config.dense_lr, "table_lr": config.table_lr,
    }


# -- results --------------------------------------------------------------------------------------
CSV_FIELDS = ("model", "library", "name", "seed", "status", "epochs", "batch_size", "train_rows", "val_rows", "test_rows",
              "steps", "val_logloss", "val_auc", "test_logloss", "test_auc", "train_seconds", "params", "settings")
SUMMARY_FIELDS = ("model", "seeds", "failed", "test_logloss_mean", "test_logloss_std", "test_auc_mean", "test_auc_std",
                  "val_logloss_mean", "val_logloss_std", "train_seconds_mean", "train_rows")


@dataclass
class Run:
    model: str  # table label, e.g. "deepctr-torch DeepFM"
    library: str
    name: str
    seed: int
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)
    settings: str = ""

    def row(self, epochs: int, batch_size: int) -> dict[str, Any]:
        d = {k: self.metrics.get(k, "") for k in CSV_FIELDS}
        d.update(model=self.model, library=self.library, name=self.name, seed=self.seed, status=self.status,
                 epochs=epochs, batch_size=batch_size, settings=self.settings)
        return d


def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else math.nan


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    by: dict[str, list[Run]] = {}
    for r in runs:
        by.setdefault(r.model, []).append(r)
    out = []
    for model, rs in by.items():
        ok = [r for r in rs if r.status == "ok"]
        d: dict[str, Any] = {"model": model, "seeds": len(ok), "failed": len(rs) - len(ok)}
        for k in ("test_logloss", "test_auc", "val_logloss"):
            d[f"{k}_mean"], d[f"{k}_std"] = _mean_std([r.metrics.get(k) for r in ok])
        d["train_seconds_mean"] = _mean_std([r.metrics.get("train_seconds") for r in ok])[0]
        d["train_rows"] = ok[0].metrics.get("train_rows") if ok else ""
        out.append(d)
    return sorted(out, key=lambda d: (math.isnan(d["test_logloss_mean"]), d["test_logloss_mean"]))


def _pm(m: float, s: float, nd: int) -> str:
    if math.isnan(m):
        return "-"
    return f"{m:.{nd}f}" + (f" +- {s:.{nd}f}" if not math.isnan(s) else "")


def format_table(summary: list[dict[str, Any]]) -> str:
    head = ("model", "seeds", "test logloss", "test AUC", "val logloss", "train s")
    rows = [(d["model"], str(d["seeds"]) + (f" ({d['failed']} failed)" if d["failed"] else ""),
             _pm(d["test_logloss_mean"], d["test_logloss_std"], 5), _pm(d["test_auc_mean"], d["test_auc_std"], 4),
             _pm(d["val_logloss_mean"], d["val_logloss_std"], 5),
             "-" if math.isnan(d["train_seconds_mean"]) else f"{d['train_seconds_mean']:.1f}") for d in summary]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)])


def write_csv(path: Path, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) and "seconds" in k else v) for k, v in r.items()})
    tmp.replace(path)


def read_runs(paths: list[Path]) -> tuple[list[Run], int, int]:
    """The runs of per-run CSVs written by this script, and their common ``(epochs, batch_size)``."""
    runs: list[Run] = []
    setups, seen = set(), set()
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--from-csv: {path} not found")
        for x in csv.DictReader(path.open()):
            missing = [k for k in CSV_FIELDS if k not in x]
            if missing:
                raise UsageError(f"{path}: not a per-run CSV of {PROG} (no column {missing[0]!r})")
            if (x["model"], x["seed"]) in seen:
                raise UsageError(f"{path}: {x['model']} seed {x['seed']} appears in more than one row")
            seen.add((x["model"], x["seed"]))
            setups.add((int(x["epochs"]), int(x["batch_size"])))
            metrics: dict[str, Any] = {}
            if x["status"] == "ok":
                for k in ("train_rows", "val_rows", "test_rows", "steps"):
                    metrics[k] = int(x[k])
                for k in ("val_logloss", "val_auc", "test_logloss", "test_auc", "train_seconds"):
                    metrics[k] = float(x[k])
                metrics["params"] = int(x["params"]) if x["params"] else ""
            runs.append(Run(x["model"], x["library"], x["name"], int(x["seed"]), x["status"], metrics, x["settings"]))
    if len(setups) != 1:
        raise UsageError(f"--from-csv: the CSVs mix settings (epochs, batch size) {sorted(setups)}; merge runs of one setting")
    epochs, batch_size = setups.pop()
    return runs, epochs, batch_size


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + "_summary.csv")


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, metavar="PREPARED_DIR", help="a folder written by `recnas data prepare`")
    p.add_argument("--models", nargs="*", default=list(DEEPCTR_MODELS), choices=list(DEEPCTR_MODELS),
                   help="deepctr-torch models (default: all five)")
    p.add_argument("--baselines", nargs="*", default=list(RECNAS_NAMES), choices=list(RECNAS_NAMES),
                   help="recnas baselines (default: all five)")
    p.add_argument("--exports", nargs="*", default=[], metavar="[LABEL=]EXPORT_DIR",
                   help="exported architectures (recnas search's export folders) trained beside the baselines")
    p.add_argument("--fraction", type=float, default=1.0,
                   help="train on the first round(F x N) training rows (whole batches of them), as recnas's "
                        "fraction: F keeps them (default 1: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--embedding-dim", type=int, default=16, help="deepctr-torch's embedding width (default 16)")
    p.add_argument("--dense-lr", type=float, default=None, help="recnas's dense Adagrad lr (default: the trainer's)")
    p.add_argument("--table-lr", type=float, default=None, help="recnas's table lr (default: the trainer's)")
    p.add_argument("--out", type=Path, default=None, help="per-run CSV (and CSV's _summary.csv sibling)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--work", type=Path, default=None, help="folder for recnas's run folders (default: a temporary one)")
    p.add_argument("--from-csv", type=Path, nargs="+", default=None, metavar="CSV",
                   help="train nothing: merge per-run CSVs of earlier runs on PREPARED_DIR (e.g. two processes run "
                        "side by side), check their row counts against it and print the one table")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.batch_size < 1 or a.embedding_dim < 1:
        p.error("--epochs, --batch-size and --embedding-dim must be >= 1")
    if not 0.0 < a.fraction <= 1.0:
        p.error(f"--fraction must be in (0, 1], got {a.fraction}")
    if not a.models and not a.baselines and not a.exports and not a.from_csv:
        p.error("nothing to train: give --models, --baselines and/or --exports")
    exports = []
    for item in a.exports:
        label, eq, path = item.partition("=")
        d = Path(path if eq else label)
        if not (d / "manifest.json").is_file():
            p.error(f"--exports {item}: {d} is not an export folder (no manifest.json)")
        exports.append((label if eq else d.name, d))
    a.exports = exports
    return a


def run(a: argparse.Namespace) -> int:
    if not (a.data / "feature_map.json").is_file():
        raise UsageError(f"{a.data}: not a prepared dataset (no feature_map.json; run `recnas data prepare`)")
    merged: list[Run] | None = None
    if a.from_csv:
        merged, a.epochs, a.batch_size = read_runs(a.from_csv)
        a.seeds = sorted({r.seed for r in merged})
    deepctr = import_deepctr() if a.models and merged is None else None

    import torch

    from recnas.data.loader import load_prepared
    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    if a.threads:
        torch.set_num_threads(a.threads)
    fm, splits = load_prepared(a.data)
    if max(fm.num_embeddings.values()) > 2**24:
        raise UsageError("deepctr-torch passes ids as float32: vocabularies above 2**24 ids would be rounded")

    # -- the rows ---------------------------------------------------------------------------------
    full = read_split(splits["train"], fm)
    n, b = full.rows, a.batch_size
    k = n if a.fraction >= 1.0 else max(1, round(a.fraction * n))  # the rows recnas's loader keeps for fraction F
    m = (k // b) * b
    if m == 0:
        raise UsageError(f"{a.data}: {k} training rows are fewer than one batch of {b}")
    fraction = m / n
    train = full.head(m)
    valid, test = read_split(splits["valid"], fm), read_split(splits["test"], fm)
    seen = {
        "train": recnas_loader_rows(splits["train"], fm, fraction=fraction, batch_size=b, drop_last=True),
        "valid": recnas_loader_rows(splits["valid"], fm, fraction=None, batch_size=EVAL_BATCH, drop_last=False),
        "test": recnas_loader_rows(splits["test"], fm, fraction=None, batch_size=EVAL_BATCH, drop_last=False),
    }
    identical = {k: same_rows(s, v) for (k, s), v in zip(seen.items(), (train, valid, test))}
    print(f"data: {a.data} ({fm.dataset}; {fm.num_dense} dense, {fm.num_sparse} sparse, "
          f"{sum(fm.num_embeddings.values()):,} ids in all)")
    kept = f" (fraction {a.fraction:g} keeps the first {k:,})" if k < n else ""
    print(f"train rows: the first {m:,} of the split's {n:,}{kept} ({m // b} batches of {b}; recnas trains whole "
          f"batches only, so both sides get fraction {m}/{n}); valid {valid.rows:,}, test {test.rows:,}")
    print("recnas's loader yields the same rows as deepctr-torch is given: "
          + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in identical.items()))
    sys.stdout.flush()

    work_tmp = None
    if a.work is None:
        work_tmp = tempfile.TemporaryDirectory(prefix="recnas-peers-")
        work = Path(work_tmp.name)
    else:
        work = a.work
        work.mkdir(parents=True, exist_ok=True)

    jobs: list[Run] = merged if merged is not None else []
    for key in a.models if merged is None else ():
        jobs += [Run(f"deepctr-torch {DEEPCTR_MODELS[key]}", "deepctr-torch", key, s,
                     settings=f"adagrad lr 0.01; embedding {a.embedding_dim}; constructor defaults") for s in a.seeds]
    for name in a.baselines if merged is None else ():
        jobs += [Run(f"recnas {RECNAS_NAMES[name]}", "recnas", name, s) for s in a.seeds]
    for label, d in a.exports if merged is None else ():
        jobs += [Run(f"recnas {label}", "recnas", f"export:{d}", s) for s in a.seeds]

    def save() -> None:
        if a.out is not None:
            write_csv(a.out, CSV_FIELDS, [r.row(a.epochs, b) for r in jobs if r.metrics or r.status != "ok"])
            write_csv(summary_path(a.out), SUMMARY_FIELDS, summarise([r for r in jobs if r.metrics or r.status != "ok"]))

    try:
        for i, job in enumerate(jobs if merged is None else ()):
            t0 = time.perf_counter()
            try:
                if job.library == "deepctr-torch":
                    job.metrics = train_deepctr(job.name, fm, train, valid, test, seed=job.seed, epochs=a.epochs,
                                                batch_size=b, embedding_dim=a.embedding_dim, deepctr=deepctr)
                else:
                    job.metrics = train_recnas(job.name, a.data, work, seed=job.seed, epochs=a.epochs, batch_size=b,
                                               fraction=fraction, dense_lr=a.dense_lr, table_lr=a.table_lr)
                    job.settings = f"dense lr {job.metrics['dense_lr']}; table lr {job.metrics['table_lr']}"
                mm = job.metrics
                msg = (f"test logloss {mm['test_logloss']:.5f} auc {mm['test_auc']:.4f} | "
                       f"val logloss {mm['val_logloss']:.5f} | {mm['train_rows']:,} train rows")
            except Exception as e:  # noqa: BLE001 -- one failed run must not lose the others
                job.status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
                msg = job.status
            print(f"[{i + 1}/{len(jobs)}] {job.model} seed {job.seed}: {msg} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr, flush=True)
            save()
    finally:
        if work_tmp is not None:
            work_tmp.cleanup()
        from recnas.train.distributed import shutdown_distributed

        shutdown_distributed()

    # -- the row counts of both sides -------------------------------------------------------------
    ok = [r for r in jobs if r.status == "ok"]
    counts = {lib: sorted({(r.metrics["train_rows"], r.metrics["val_rows"], r.metrics["test_rows"])
                           for r in ok if r.library == lib}) for lib in ("deepctr-torch", "recnas")}
    expected = (m, valid.rows, test.rows)
    fmt = lambda cs: " / ".join(f"train {t} valid {v} test {s}" for t, v, s in cs) or "none"  # noqa: E731
    agree = all(identical.values()) and all(cs in ([], [expected]) for cs in counts.values())
    print(f"rows  deepctr-torch: {fmt(counts['deepctr-torch'])} | recnas: {fmt(counts['recnas'])} | "
          f"same rows: {'yes' if agree else 'NO'}")
    print(f"seeds {' '.join(map(str, a.seeds))}; {a.epochs} epoch(s), batch {b}; mean +- sample std over seeds")
    print()
    summary = summarise(jobs)
    print(format_table(summary))
    save()
    if a.out is not None:
        print(f"\nper-run CSV: {a.out}; table: {summary_path(a.out)}")
    failed = [r for r in jobs if r.status != "ok"]
    for r in failed:
        print(f"{PROG}: {r.model} seed {r.seed}: {r.status}", file=sys.stderr)
    return 0 if agree and not failed else 1


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        return run(a)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
