"""``recnas train``: production training of an export (and of the baselines) on prepared parquet data.

Real components throughout: synthetic Criteo rows prepared to parquet, TorchRec DMP training through
the recnas trainer, real ``recnas train`` subprocesses (one of them under a 2-process torchrun on CPU).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recnas.data import ParquetBatchLoader, load_prepared, prepare_synthetic
from recnas.export import (
    DLRMConfig,
    ProdTrainConfig,
    build_model,
    export_architecture,
    load_export,
    train_baseline,
    train_export,
)
from recnas.export.production import early_stop_epoch
from recnas.space import SearchSpace
from recnas.space.presets import LIBRARY_PRESETS, PRESETS
from recnas.train.checkpoint import load_model_weights
from recnas.train.trainer import MAX_LOSS

REPO = Path(__file__).resolve().parents[1]
BATCH = 256


def _run(args: list[str], timeout: int = 420) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return _run(["-m", "recnas", "train", *args])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("data") / "ds", 3000, hash_size=200)


@pytest.fixture(scope="module")
def export(data, tmp_path_factory) -> Path:
    """An export of a tiny-space architecture with seeded (untrained) weights."""
    fm, _ = load_prepared(data)
    spec = PRESETS["dcnv2"](SearchSpace.load("tiny"))
    torch.manual_seed(3)
    model = build_model(spec, fm)
    return export_architecture(model, spec, fm, tmp_path_factory.mktemp("export") / "arch", {"score": 1.0})


def _steps_per_epoch(data: Path, batch: int, world: int = 1, fraction: float = 1.0) -> int:
    fm, splits = load_prepared(data)
    return len(ParquetBatchLoader(splits["train"], fm, batch_size=batch, drop_last=True, world_size=world,
                                  fraction=fraction))


def _scored(model: torch.nn.Module, data: Path, split: str, world: int = 1) -> dict[str, float]:
    """Log loss and AUC by sklearn of ``model`` on ``split``, in this process, over the rows the
    trainer's ``world`` ranks evaluate (every rank's part)."""
    from sklearn.metrics import log_loss, roc_auc_score

    fm, splits = load_prepared(data)
    batches = [b for r in range(world) for b in ParquetBatchLoader(splits[split], fm, batch_size=4096, rank=r,
                                                                   world_size=world)]
    model.eval()
    with torch.no_grad():
        z = torch.cat([model(b.dense_features, b.sparse_features).double().reshape(-1) for b in batches])
    y = torch.cat([b.labels.double().reshape(-1) for b in batches]).numpy()
    return {"logloss": float(log_loss(y, torch.sigmoid(z).numpy())), "auc": float(roc_auc_score(y, z.numpy()))}


def _assert_metrics_of(model: torch.nn.Module, data: Path, record: dict[str, float], world: int = 1) -> None:
    """The history record's val/test metrics are ``model``'s, scored independently (rel 1e-6)."""
    for split, prefix in (("valid", "val"), ("test", "test")):
        got = _scored(model, data, split, world)
        for m in ("logloss", "auc"):
            assert record[f"{prefix}_{m}"] == pytest.approx(got[m], rel=1e-6), f"{prefix}_{m}"


def _rows(data: Path, split: str) -> int:
    fm, splits = load_prepared(data)
    return ParquetBatchLoader(splits[split], fm).split_rows


@pytest.fixture(scope="module")
def two_epochs(data, export, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("prod") / "run"
    r = _train_cli(str(export), "--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", str(BATCH))
    return out, r


def test_cli_trains_an_export_with_metrics_every_epoch(data, export, two_epochs):
    out, r = two_epochs
    assert r.returncode == 0, r.stderr[-3000:]
    spe = _steps_per_epoch(data, BATCH)
    hist = json.loads((out / "history.json").read_text())
    assert hist["status"] == "completed"
    assert [h["epoch"] for h in hist["epochs"]] == [1, 2]
    assert [h["step"] for h in hist["epochs"]] == [spe, 2 * spe]
    for h in hist["epochs"]:
        assert h["val_rows"] == _rows(data, "valid") and h["test_rows"] == _rows(data, "test")
    assert hist["epochs"][0]["val_logloss"] != hist["epochs"][1]["val_logloss"]
    # progress bar and per-epoch lines on stderr, the tables on stdout
    assert "train:" in r.stderr and "epoch 2/2" in r.stderr
    assert "val logloss" in r.stdout and "test AUC" in r.stdout and "completed" in r.stdout

    # the trained model is an export with the last epoch's weights
    ex = load_export(out / "model")
    src = load_export(export)
    assert ex.key == src.key
    trained = build_model(ex.architecture, ex.feature_map)
    load_model_weights(out / "train" / "checkpoints" / f"step_{2 * spe:08d}", trained)
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(ex.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, src.model.state_dict()[k]) for k, v in ex.model.state_dict().items())
    training = ex.meta["training"]
    assert training["status"] == "completed" and training["exported_epoch"] == 2 and training["init"] == "scratch"
    assert [h["val_logloss"] for h in training["history"]] == [h["val_logloss"] for h in hist["epochs"]]
    assert ex.meta["source"]["key"] == src.key
    _assert_metrics_of(ex.model, data, hist["epochs"][1])  # epoch 2's metrics are the exported weights'

    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["start_step"] == 0 and result["steps"] == 2 * spe


def test_cli_resume_after_interruption_continues_the_run(data, export, two_epochs, tmp_path):
    """Stopped mid-way through epoch 2, then resumed: it continues from the checkpoint (epoch 1 is
    neither retrained nor re-evaluated) and ends exactly where the uninterrupted run ended."""
    full_out, full = two_epochs
    assert full.returncode == 0, full.stderr[-3000:]
    spe = _steps_per_epoch(data, BATCH)
    stop = spe + 3
    out = tmp_path / "run"
    args = [str(export), "--data", str(data), "--out", str(out), "--epochs", "2", "--batch-size", str(BATCH), "--no-progress"]
    r = _train_cli(*args, "--stop-at-step", str(stop))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"stopped at step {stop}" in r.stdout
    first = json.loads((out / "history.json").read_text())["epochs"]
    assert len(first) == 1 and not (out / "model").exists()

    r = _train_cli(*args)  # without --resume: refuses to touch the run
    assert r.returncode == 2 and "already holds a training run" in r.stderr and "--resume" in r.stderr

    r = _train_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["start_step"] == stop and result["steps"] == 2 * spe and result["status"] == "completed"
    hist = json.loads((out / "history.json").read_text())["epochs"]
    assert hist[0] == first[0]  # same record: epoch 1 was not redone
    want = json.loads((full_out / "history.json").read_text())["epochs"]
    for got, ref in zip(hist, want):
        for k in ("val_logloss", "val_auc", "test_logloss", "test_auc"):
            assert got[k] == pytest.approx(ref[k], rel=1e-6, abs=1e-7), k
    a, b = load_export(out / "model").model.state_dict(), load_export(full_out / "model").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_torchrun_two_processes_from_inherited_weights(data, export, tmp_path):
    """torchrun --nproc-per-node 2 on CPU (gloo): tables sharded over 2 ranks, started from the
    export's weights, every validation/test row scored once, the trained export written by rank 0."""
    out = tmp_path / "run"
    r = _run([
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "recnas", "train", str(export), "--data", str(data), "--out", str(out),
        "--init", "inherited", "--epochs", "1", "--batch-size", "128", "--no-progress",
    ])
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert r.stdout.count("trained model:") == 1  # rank 0 alone reports
    hist = json.loads((out / "history.json").read_text())["epochs"]
    assert len(hist) == 1
    assert hist[0]["step"] == _steps_per_epoch(data, 128, world=2)
    assert hist[0]["val_rows"] == _rows(data, "valid") // 2 * 2
    ex = load_export(out / "model")
    assert ex.meta["training"]["world_size"] == 2 and ex.meta["training"]["init"] == "inherited"
    # the metrics gathered over both ranks equal the trained weights' on the same rows in one process
    _assert_metrics_of(ex.model, data, hist[0], world=2)

    # step 0 (before any update) holds exactly the export's weights, resharded over 2 ranks
    src = load_export(export)
    start = build_model(src.architecture, src.feature_map)
    load_model_weights(out / "train" / "checkpoints" / "step_00000000", start)
    for k, v in src.model.state_dict().items():
        torch.testing.assert_close(start.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert any(not torch.equal(v, src.model.state_dict()[k]) for k, v in ex.model.state_dict().items())


@pytest.mark.parametrize("name", ["dlrm", "deepfm", "dcnv2", "dcn_lib"])
def test_baselines_train_to_finite_metrics(name, data, tmp_path):
    config = ProdTrainConfig(epochs=1, batch_size=128, fraction=0.2, progress=False)
    r = train_baseline(name, data, out_dir=tmp_path / name, config=config)
    assert r.status == "completed" and r.steps == _steps_per_epoch(data, 128, fraction=0.2) > 0
    ex = load_export(Path(r.export_dir))
    h = r.history[-1]
    _assert_metrics_of(ex.model, data, {"val_logloss": h.val_logloss, "val_auc": h.val_auc,
                                        "test_logloss": h.test_logloss, "test_auc": h.test_auc})
    if name == "dlrm":
        assert ex.architecture == DLRMConfig() and ex.manifest["model"]["kind"] == "dlrm"
        assert type(ex.model).__name__ == "DLRMBaseline"
    elif name in LIBRARY_PRESETS:  # the library presets belong to no space
        assert ex.spec == LIBRARY_PRESETS[name]() and all(b.norm == "none" for b in ex.spec.blocks)
    else:
        assert ex.spec == PRESETS[name](SearchSpace.load("ctr_extended"))
    in_space = name in ("deepfm", "dcnv2")
    assert ex.meta["source"] == {"kind": "baseline", "name": name, "space": "ctr_extended" if in_space else None}


def test_bad_requests_fail_clearly(data, export, tmp_path):
    with pytest.raises(ValueError, match=r"unknown baseline 'wide'; choose one of \['dlrm', 'deepfm', 'dcnv2', 'deepfm_lib', 'dcn_lib'\]"):
        train_baseline("wide", data, out_dir=tmp_path / "x")
    with pytest.raises(ValueError, match="init: expected one of"):
        train_export(export, data, out_dir=tmp_path / "y", init="warm")
    other = prepare_synthetic(tmp_path / "other", 800, hash_size=100)
    with pytest.raises(ValueError, match="feature map differs from the model's"):
        train_export(export, other, out_dir=tmp_path / "z")
    r = _train_cli("--data", str(data), "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "give either EXPORT_DIR or --baseline" in r.stderr
    r = _train_cli(str(tmp_path / "no-export"), "--data", str(data), "--out", str(tmp_path / "w"))
    assert r.returncode == 2 and "export folder not found" in r.stderr and "Traceback" not in r.stderr


def test_max_loss_stops_a_diverging_run_resumably(data, export, tmp_path):
    """``--max-loss`` reaches the trainer's divergence guard: a fresh model's batch log loss (~0.6-0.7)
    is above 0.3, so the first step stops the run (exit 3, nothing updated, a resumable checkpoint);
    max_loss may change on --resume, and the run then completes from that checkpoint."""
    out = tmp_path / "run"
    args = [str(export), "--data", str(data), "--out", str(out), "--batch-size", "128", "--fraction", "0.2",
            "--no-progress"]
    r = _train_cli(*args, "--max-loss", "0.3")
    assert r.returncode == 3, (r.stdout + r.stderr)[-3000:]
    m = re.search(r"recnas train: error: training loss diverged \(([0-9.]+) > max_loss 0\.3\) at step 1 ", r.stderr)
    assert m and 0.3 < float(m.group(1)) < 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    assert json.loads((out / "run.json").read_text())["config"]["max_loss"] == 0.3
    assert not (out / "model").exists()

    r = _train_cli(*args, "--resume")  # the default max_loss (10)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["start_step"] == 0
    assert result["steps"] == _steps_per_epoch(data, 128, fraction=0.2)


def test_prod_train_config_validates_max_loss():
    assert ProdTrainConfig().max_loss == MAX_LOSS
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_loss must be positive"):
            ProdTrainConfig(max_loss=bad)
    assert ProdTrainConfig(max_loss=float("inf")).max_loss == float("inf")  # the guard off


def test_early_stopping_rule():
    assert not early_stop_epoch([0.5, 0.4, 0.45], patience=0)
    assert early_stop_epoch([0.5, 0.4, 0.45], patience=1)
    assert not early_stop_epoch([0.5, 0.4, 0.45], patience=2)
    assert early_stop_epoch([0.5, 0.4, 0.45, 0.41], patience=2)
    assert not early_stop_epoch([0.5, 0.4, 0.45, 0.39], patience=2)
    assert early_stop_epoch([0.5, float("nan")], patience=1)


def test_early_stopping_exports_the_best_epoch(data, tmp_path):
    """With patience 1 the run stops at the first epoch that does not lower the validation log loss
    (a high learning rate makes these rows overfit within a few epochs) and exports the epoch before it."""
    spe = _steps_per_epoch(data, BATCH)
    config = ProdTrainConfig(epochs=6, batch_size=BATCH, early_stopping_patience=1, dense_lr=0.3, table_lr=0.3,
                             progress=False)
    r = train_baseline("deepfm", data, space="tiny", out_dir=tmp_path / "es", config=config)
    val = [h.val_logloss for h in r.history]
    assert r.status == "early_stopped" and 2 <= len(val) < 6, val
    assert val[-1] >= min(val[:-1]) and r.best_epoch == len(val) - 1 == r.best.epoch
    assert all(not early_stop_epoch(val[:k], 1) for k in range(1, len(val)))
    ex = load_export(Path(r.export_dir))
    assert ex.meta["training"]["exported_epoch"] == r.best_epoch
    best = build_model(ex.architecture, ex.feature_map)
    load_model_weights(tmp_path / "es" / "train" / "checkpoints" / f"step_{r.best_epoch * spe:08d}", best)
    for k, v in best.state_dict().items():
        torch.testing.assert_close(ex.model.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_a_run_saved_before_the_recipe_fields_resumes_and_a_changed_recipe_is_refused(tmp_path):
    """run.json of a production run saved before ProdTrainConfig took the recipe's max_steps /
    lr_schedule / lr_warmup / validate resumes (they read at their defaults); a run saved with
    another schedule is refused naming the key."""
    import json
    from dataclasses import asdict

    from recnas.export.production import RUN_FILE, ProdTrainConfig, _check_run_file

    run = {"name": "m", "architecture": {"a": 1}, "init": "scratch", "data": "d", "config": asdict(ProdTrainConfig())}
    old = {**run, "config": {k: v for k, v in run["config"].items()
                             if k not in ("max_steps", "lr_schedule", "lr_warmup", "validate")}}
    (tmp_path / RUN_FILE).write_text(json.dumps(old))
    _check_run_file(tmp_path, run, resume=True)
    (tmp_path / RUN_FILE).write_text(json.dumps({**old, "config": {**old["config"], "lr_schedule": "cosine"}}))
    with pytest.raises(ValueError, match="differs at lr_schedule: saved \"cosine\", now \"constant\""):
        _check_run_file(tmp_path, run, resume=True)
    with pytest.raises(ValueError, match="max_steps must be 0"):
        ProdTrainConfig(max_steps=5)
