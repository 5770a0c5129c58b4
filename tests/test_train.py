"""Standalone training, supernet warm-up, checkpoints/resume and bad-loss handling (one process).

Data: a small synthetic dataset prepared by recnas's own pipeline (``prepare_synthetic``), and the
real Criteo rows of ``../shared/data`` where present.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from recnas.data import ParquetBatchLoader, load_prepared, prepare, prepare_synthetic
from recnas.models import CTRModel
from recnas.space.space import SearchSpace
from recnas.space.spec import ArchSpec, BlockSpec
from recnas.train.checkpoint import latest_checkpoint, load_model_weights, read_meta
from recnas.train.distributed import init_distributed
from recnas.train.loop import NonFiniteLossError, evaluate
from recnas.train.trainer import RESULT_FILE, TrainConfig, train
from recnas.train.warmup import (
    SUPERNET_FILE,
    WarmupConfig,
    full_path_probability,
    load_supernet,
    lr_factor,
    warmup,
)

SPEC = ArchSpec(
    embedding_dim=8,
    blocks=(
        BlockSpec("fc", "efc", dense_dim=16, sparse_dim=8, dense_in=(0,), sparse_in=(0,), deep_fm=True),
        BlockSpec("dot", "efc", dense_dim=16, sparse_dim=4, dense_in=(0, 1), sparse_in=(1,)),
    ),
    space="",
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("synthetic"), 6000, seed=1, hash_size=500)


def loaders(data: Path, batch_size: int = 128, fraction: float | None = None):
    fm, splits = load_prepared(data)
    train_l = ParquetBatchLoader(splits["train"], fm, batch_size=batch_size, shuffle=True, seed=0,
                                 drop_last=True, fraction=fraction)
    val_l = ParquetBatchLoader(splits["valid"], fm, batch_size=1024)
    return fm, train_l, val_l


def sklearn_metrics(model: torch.nn.Module, loader: ParquetBatchLoader) -> tuple[float, float]:
    """(log loss, AUC) of ``model`` on ``loader``'s rows, by sklearn, in this process."""
    from sklearn.metrics import log_loss, roc_auc_score

    model.eval()
    with torch.no_grad():
        batches = list(loader)
        z = torch.cat([model(b.dense_features, b.sparse_features).double().reshape(-1) for b in batches])
    y = torch.cat([b.labels.double().reshape(-1) for b in batches]).numpy()
    return float(log_loss(y, torch.sigmoid(z).numpy())), float(roc_auc_score(y, z.numpy()))


def saved_state(ckpt: Path, tmp: Path) -> dict:
    """Every tensor of a checkpoint as one plain dict (shards reassembled)."""
    dcp_to_torch_save(ckpt, tmp / "state.pt")
    return torch.load(tmp / "state.pt", weights_only=True)


def assert_same_state(a: dict, b: dict, path: str = "") -> None:
    assert a.keys() == b.keys(), path
    for k in a:
        if isinstance(a[k], dict):
            assert_same_state(a[k], b[k], f"{path}.{k}")
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), f"{path}.{k} differs"
        else:
            assert a[k] == b[k], f"{path}.{k}"


class NaNAt:
    """The real loader, with the dense features of batch ``k`` of epoch 0 set to NaN."""

    def __init__(self, loader: ParquetBatchLoader, k: int) -> None:
        self.loader, self.k, self.epoch = loader, k, 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, e: int) -> None:
        self.epoch = e
        self.loader.set_epoch(e)

    def __iter__(self):
        for i, b in enumerate(self.loader):
            if i == self.k and self.epoch == 0:
                b.dense_features[0, 0] = float("nan")
            yield b


# -- schedules ------------------------------------------------------------------------------------
def test_lr_factor_ramps_linearly_then_decays_by_cosine() -> None:
    total = 100
    f = [lr_factor(s, total, 0.1) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert np.all(np.diff(f[:10]) > 0) and np.all(np.diff(f[10:]) < 0)
    assert f[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lr_factor(total, total, 0.1) == pytest.approx(0.0)


def test_constant_schedule_ramps_then_holds_and_bad_schedules_are_rejected() -> None:
    f = [lr_factor(s, 50, 0.2, "constant") for s in range(50)]
    assert f[:10] == pytest.approx([(s + 1) / 10 for s in range(10)]) and f[10:] == [1.0] * 40
    assert [lr_factor(s, 50, 0.0, "constant") for s in range(50)] == [1.0] * 50
    with pytest.raises(ValueError, match="linear"):
        lr_factor(0, 10, 0.1, "linear")
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_warmup"):
        TrainConfig(lr_warmup=1.0)


def test_scheduled_training_resumes_exactly_and_differs_from_constant(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic)
    build = lambda d: CTRModel(fm, SPEC, device=d)  # noqa: E731
    cfg = TrainConfig(max_steps=10, lr_schedule="cosine", lr_warmup=0.3, checkpoint_every=5, progress=False)
    full = train(build, train_l, config=cfg, out_dir=tmp_path / "a")
    train(build, train_l, config=cfg, out_dir=tmp_path / "b", stop_at_step=6)
    rest = train(build, train_l, config=cfg, out_dir=tmp_path / "b")
    assert rest.losses == full.losses[6:]  # the schedule is a function of the step, not the segment
    const = train(build, train_l, config=TrainConfig(max_steps=10, progress=False), out_dir=tmp_path / "c")
    assert const.losses[0] == full.losses[0] and const.losses[1] != full.losses[1]  # the ramp slowed step 1


def test_full_path_probability_falls_from_one_to_zero() -> None:
    p = [full_path_probability(s, 20) for s in range(30)]
    assert p[0] == 1.0 and p[10] == pytest.approx(0.5) and p[20] == 0.0 and max(p[20:]) == 0.0
    assert full_path_probability(0, 0) == 0.0


# -- standalone training --------------------------------------------------------------------------
def test_training_reduces_loss_and_writes_results(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, val_l = loaders(synthetic)
    cfg = TrainConfig(epochs=2, progress=False)
    r = train(lambda d: CTRModel(fm, SPEC, device=d), train_l, val_loader=val_l, config=cfg,
              out_dir=tmp_path, describe={"spec": SPEC.to_dict()})
    assert r.steps == 2 * len(train_l) and r.skipped_steps == 0
    assert all(math.isfinite(x) for x in r.losses)
    assert np.mean(r.losses[-10:]) < np.mean(r.losses[:10])
    assert r.val.rows == val_l.num_rows and r.test is None
    # the metrics are those of the saved weights: reloaded into a plain model and scored here
    plain = CTRModel(fm, SPEC)
    load_model_weights(r.checkpoint, plain)
    assert (r.val.logloss, r.val.auc) == pytest.approx(sklearn_metrics(plain, val_l), rel=1e-6)
    assert r.val.logloss < r.val.baseline_logloss  # learned something beyond the label rate
    assert r.samples_per_s > 0
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["val"]["logloss"] == pytest.approx(r.val.logloss) and saved["steps"] == r.steps
    meta = read_meta(latest_checkpoint(tmp_path))
    assert meta["kind"] == "train" and meta["step"] == r.steps and meta["describe"]["spec"] == SPEC.to_dict()
    assert meta["world_size"] == 1 and meta["epoch"] == 2


def test_evaluate_matches_sklearn_metrics(synthetic: Path) -> None:
    from sklearn.metrics import log_loss, roc_auc_score

    fm, _, val_l = loaders(synthetic)
    torch.manual_seed(0)
    model = CTRModel(fm, SPEC)
    forward = lambda m, b: m(b.dense_features, b.sparse_features)  # noqa: E731
    r = evaluate(model, val_l, init_distributed(), forward)
    with torch.no_grad():
        z = torch.cat([forward(model, b) for b in val_l]).double()
    y = torch.cat([b.labels for b in val_l]).numpy()
    assert r.rows == len(y) and r.label_rate == pytest.approx(y.mean())
    assert r.logloss == pytest.approx(log_loss(y, torch.sigmoid(z).numpy()), rel=1e-6)
    assert r.auc == pytest.approx(roc_auc_score(y, z.numpy()), rel=1e-9)


def test_resume_after_interruption_equals_uninterrupted_run(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic)
    cfg = TrainConfig(max_steps=len(train_l) + 6, checkpoint_every=5, progress=False)  # crosses an epoch
    build = lambda d: CTRModel(fm, SPEC, device=d)  # noqa: E731
    full = train(build, train_l, config=cfg, out_dir=tmp_path / "a")
    first = train(build, train_l, config=cfg, out_dir=tmp_path / "b", stop_at_step=7)
    assert first.steps == 7 and first.val is None
    rest = train(build, train_l, config=cfg, out_dir=tmp_path / "b")
    assert rest.steps == full.steps and len(rest.losses) == full.steps - 7
    assert rest.losses == full.losses[7:]  # same batches, same weights -> the same losses
    assert_same_state(
        saved_state(Path(full.checkpoint), tmp_path / "a"), saved_state(Path(rest.checkpoint), tmp_path / "b")
    )


def test_nan_loss_stops_with_resumable_checkpoint_and_skip_mode_counts(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic)

    build = lambda d: CTRModel(fm, SPEC, device=d)  # noqa: E731
    cfg = TrainConfig(max_steps=8, progress=False)
    with pytest.raises(NonFiniteLossError, match=r"step 4 \(epoch 0, batch 3\).*resumable checkpoint") as e:
        train(build, NaNAt(train_l, 3), config=cfg, out_dir=tmp_path)
    assert e.value.step == 4 and Path(e.value.checkpoint).name == "step_00000003"
    assert read_meta(e.value.checkpoint)["batch_in_epoch"] == 3  # resume retries the bad batch

    with pytest.raises(ValueError, match="dense_lr"):  # a different recipe cannot resume this run
        train(build, NaNAt(train_l, 3), config=TrainConfig(max_steps=8, dense_lr=0.5, progress=False),
              out_dir=tmp_path)

    r = train(build, NaNAt(train_l, 3), config=TrainConfig(max_steps=8, on_nan="skip", progress=False),
              out_dir=tmp_path)
    assert r.steps == 8 and r.skipped_steps == 1
    assert math.isnan(r.losses[0]) and all(math.isfinite(x) for x in r.losses[1:])


def test_divergence_guard_treats_a_loss_above_max_loss_like_nan(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic)
    build = lambda d: CTRModel(fm, SPEC, device=d)  # noqa: E731
    # A fresh model's batch log loss is ~0.7 here, so max_loss 0.3 flags the first step as diverged.
    with pytest.raises(NonFiniteLossError, match=r"diverged \(0\.\d+ > max_loss 0\.3\) at step 1 ") as e:
        train(build, train_l, config=TrainConfig(max_steps=4, max_loss=0.3, progress=False), out_dir=tmp_path / "a")
    assert Path(e.value.checkpoint).name == "step_00000000"
    r = train(build, train_l, config=TrainConfig(max_steps=4, max_loss=0.3, on_nan="skip", progress=False),
              out_dir=tmp_path / "b")
    assert r.skipped_steps == 4 and all(0.3 < x < 1.0 for x in r.losses)
    # nothing was applied: after 4 skipped steps the state (tables, dense weights, optimizer) is the
    # initial one, which the stopped run saved before its first step
    assert_same_state(saved_state(Path(r.checkpoint), tmp_path / "b"), saved_state(Path(e.value.checkpoint), tmp_path / "a"))
    with pytest.raises(ValueError, match="max_loss"):
        TrainConfig(max_loss=0.0)
    with pytest.raises(ValueError, match="max_loss"):
        WarmupConfig(max_loss=-1.0)


# -- supernet warm-up -----------------------------------------------------------------------------
def test_warmup_resume_equals_uninterrupted_and_load_supernet(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic, batch_size=64, fraction=0.2)
    space = SearchSpace.load("tiny")
    cfg = WarmupConfig(epochs=1, lr=0.05, table_lr=0.05, progress=False)
    steps = len(train_l)
    full = warmup(fm, space, train_l, config=cfg, out_dir=tmp_path / "a")
    assert full.steps == steps and full.skipped_steps == 0
    assert full.full_path_steps >= 1  # p = 1 at step 0
    assert all(math.isfinite(x) for x in full.losses)
    first = warmup(fm, space, train_l, config=cfg, out_dir=tmp_path / "b", stop_at_step=steps // 2)
    assert first.supernet_dir is None
    rest = warmup(fm, space, train_l, config=cfg, out_dir=tmp_path / "b")
    assert rest.losses == full.losses[steps // 2 :]  # same specs drawn after resume
    a = saved_state(latest_checkpoint(tmp_path / "a"), tmp_path / "a")
    assert_same_state(a, saved_state(latest_checkpoint(tmp_path / "b"), tmp_path / "b"))

    card = json.loads((tmp_path / "a" / SUPERNET_FILE).read_text())
    assert card["space"]["name"] == "tiny" and card["feature_map"]["dataset"] == fm.dataset
    net = load_supernet(tmp_path / "a")
    got = net.state_dict()
    for k, v in a["model"].items():
        assert torch.equal(got[k], v), k
    spec = space.sample(np.random.default_rng(3))
    batch = next(iter(ParquetBatchLoader(load_prepared(synthetic)[1]["valid"], fm, batch_size=16)))
    with torch.no_grad():
        out = net(batch.dense_features, batch.sparse_features, spec)
        ref = net.extract(spec)(batch.dense_features, batch.sparse_features)
    assert out.shape == (16,) and torch.allclose(out, ref, atol=1e-5)


def test_warmup_nan_stops_naming_the_subnet_and_resume_redraws_it(synthetic: Path, tmp_path: Path) -> None:
    fm, train_l, _ = loaders(synthetic, batch_size=64, fraction=0.2)
    space = SearchSpace.load("tiny")
    cfg = WarmupConfig(epochs=1, lr=0.05, table_lr=0.05, progress=False)
    full = warmup(fm, space, train_l, config=cfg, out_dir=tmp_path / "a")
    with pytest.raises(NonFiniteLossError, match=r"warm-up loss non-finite \(nan\) at step 3 \(epoch 0, batch 2, subnet [0-9a-f]+\)") as e:
        warmup(fm, space, NaNAt(train_l, 2), config=cfg, out_dir=tmp_path / "b")
    assert Path(e.value.checkpoint).name == "step_00000002"
    # the checkpoint holds the spec sampler from before the bad step: resuming on clean batches draws
    # the same subnets as the uninterrupted run and ends in the same state
    rest = warmup(fm, space, train_l, config=cfg, out_dir=tmp_path / "b")
    assert rest.losses == full.losses[2:]
    assert_same_state(
        saved_state(latest_checkpoint(tmp_path / "a"), tmp_path / "a"),
        saved_state(latest_checkpoint(tmp_path / "b"), tmp_path / "b"),
    )
    skip_cfg = WarmupConfig(epochs=1, lr=0.05, table_lr=0.05, on_nan="skip", progress=False)
    skipped = warmup(fm, space, NaNAt(train_l, 2), config=skip_cfg, out_dir=tmp_path / "c")
    assert skipped.skipped_steps == 1 and math.isnan(skipped.losses[2]) and skipped.steps == full.steps


def test_load_supernet_names_missing_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no warmed-up supernet"):
        load_supernet(tmp_path)


# -- real rows ------------------------------------------------------------------------------------
def test_training_on_real_criteo_rows_beats_label_rate(shared_data: Path, tmp_path: Path) -> None:
    raw = shared_data / "criteo_dac_train_first10k.txt.gz"
    if not raw.exists():
        pytest.skip(f"{raw} not present")
    prepare("criteo", [raw], tmp_path / "criteo", hash_size=2000, progress=False)
    fm, train_l, val_l = loaders(tmp_path / "criteo", batch_size=128)
    r = train(lambda d: CTRModel(fm, SPEC, device=d), train_l, val_loader=val_l,
              config=TrainConfig(epochs=2, progress=False), out_dir=tmp_path / "run")
    assert r.val.logloss < r.val.baseline_logloss, r.val
    assert r.val.auc > 0.6, r.val
