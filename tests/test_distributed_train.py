"""World size 2 on 127.0.0.1 (gloo, real processes): table placement, training, supernet sync,
checkpoint world-size rules, and ``recnas arch train`` under torchrun (``recnas supernet warmup``
shares its launcher code; the warm-up itself runs at world size 2 in the spawned test)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from recnas.data import ParquetBatchLoader, load_prepared, prepare_synthetic
from recnas.space.spec import ArchSpec, BlockSpec

pytestmark = pytest.mark.distributed

SPEC = ArchSpec(
    embedding_dim=8,
    blocks=(
        BlockSpec("fc", "efc", dense_dim=16, sparse_dim=8, dense_in=(0,), sparse_in=(0,)),
        BlockSpec("dot", "efc", dense_dim=16, sparse_dim=4, dense_in=(0, 1), sparse_in=(0, 1)),
    ),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic(tmp_path_factory.mktemp("synthetic"), 4000, seed=2, hash_size=300)


def one_process_metrics(checkpoint: Path, fm, loaders: list[ParquetBatchLoader]) -> tuple[float, float]:
    """(log loss, AUC) by sklearn of a ``SPEC`` training checkpoint of any world size, loaded into
    a plain model in this process, on the rows of ``loaders`` (e.g. every rank's part of a split)."""
    from sklearn.metrics import log_loss, roc_auc_score

    from recnas.models import CTRModel
    from recnas.train.checkpoint import load_model_weights

    model = CTRModel(fm, SPEC)
    load_model_weights(checkpoint, model)
    model.eval()
    batches = [b for loader in loaders for b in loader]
    with torch.no_grad():
        z = torch.cat([model(b.dense_features, b.sparse_features).double().reshape(-1) for b in batches])
    y = torch.cat([b.labels.double().reshape(-1) for b in batches]).numpy()
    return float(log_loss(y, torch.sigmoid(z).numpy())), float(roc_auc_score(y, z.numpy()))


def _worker(rank: int, port: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from recnas.models import CTRModel, Supernet
    from recnas.space.space import SearchSpace
    from recnas.train.distributed import init_distributed, make_optimizer, shard, table_placement
    from recnas.train.loop import train_step
    from recnas.train.trainer import TrainConfig, train
    from recnas.train.warmup import WarmupConfig, warmup

    env = init_distributed()
    fm, splits = load_prepared(data)
    report: dict = {"env": [env.rank, env.world_size, env.backend, str(env.device)]}

    # 1. standalone training: per-rank shards of the data, metrics over both ranks' rows
    train_l = ParquetBatchLoader(splits["train"], fm, batch_size=64, shuffle=True, drop_last=True,
                                 rank=env.rank, world_size=2, limit=1600)
    val_l = ParquetBatchLoader(splits["valid"], fm, batch_size=128, rank=env.rank, world_size=2)
    r = train(lambda d: CTRModel(fm, SPEC, device=d), train_l, val_loader=val_l,
              config=TrainConfig(epochs=1, progress=False), out_dir=Path(out) / "train", env=env)
    report["losses"] = list(r.losses)
    report["val"] = [r.val.logloss, r.val.auc, r.val.rows]
    report["val_rows_local"] = val_l.num_rows

    # 2. supernet: the planner puts whole tables on both ranks; every rank trains the same specs and
    # only the existing dense grads are all-reduced -> identical dense weights on both ranks
    space = SearchSpace.load("tiny")
    torch.manual_seed(0)
    sn = shard(Supernet(fm, space, device=torch.device("meta")), env, supernet=True)
    report["placement"] = table_placement(sn)
    opt = make_optimizer(sn, dense_lr=0.05)
    rng = np.random.default_rng(0)
    for i, batch in enumerate(train_l):
        if i == 4:
            break
        spec = space.sample(rng)
        train_step(sn, opt, batch, env, lambda m, b: m(b.dense_features, b.sparse_features, spec))
    dense = [p.detach().reshape(-1) for n, p in sn.named_parameters() if "embedding_bags" not in n]
    flat = torch.cat(dense)
    both = [torch.zeros_like(flat) for _ in range(2)]
    dist.all_gather(both, flat)
    report["supernet_dense_equal"] = bool(torch.equal(both[0], both[1]))
    report["supernet_dense_trained"] = int(flat.numel())

    # 3. the warm-up itself, for load_supernet in the parent
    warm_l = ParquetBatchLoader(splits["train"], fm, batch_size=64, shuffle=True, drop_last=True,
                                rank=env.rank, world_size=2, limit=640)
    w = warmup(fm, space, warm_l, config=WarmupConfig(lr=0.05, table_lr=0.05, progress=False),
               out_dir=Path(out) / "warmup", env=env)
    report["warmup_losses"] = list(w.losses)
    Path(out, f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


def test_two_ranks_shard_tables_train_and_sync_supernet(synthetic: Path, tmp_path: Path) -> None:
    mp.spawn(_worker, args=(free_port(), str(synthetic), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["env"][:3] == [0, 2, "gloo"] and r1["env"][:3] == [1, 2, "gloo"]

    placement = r0["placement"]
    fm, splits = load_prepared(synthetic)
    assert sorted(placement) == sorted(f"t_{n}" for n in fm.sparse_names) or len(placement) == fm.num_sparse
    assert {r for ranks in placement.values() for r in ranks} == {0, 1}  # tables on both ranks
    assert r0["placement"] == r1["placement"]

    for rep in (r0, r1):
        losses = rep["losses"]
        assert all(math.isfinite(x) for x in losses)
        assert np.mean(losses[-3:]) < np.mean(losses[:3])  # decreasing
    assert r0["val"] == r1["val"]  # metrics over the gathered rows of both ranks
    assert r0["val"][2] == r0["val_rows_local"] + r1["val_rows_local"]
    # and they are the metrics of the trained weights on those rows, scored in one plain process
    from recnas.train.checkpoint import latest_checkpoint

    val_parts = [ParquetBatchLoader(splits["valid"], fm, batch_size=128, rank=r, world_size=2) for r in (0, 1)]
    assert r0["val"][:2] == pytest.approx(one_process_metrics(latest_checkpoint(tmp_path / "train"), fm, val_parts),
                                          rel=1e-6)
    assert r0["supernet_dense_equal"] and r1["supernet_dense_equal"]
    assert all(math.isfinite(x) for x in r0["warmup_losses"] + r1["warmup_losses"])

    # a world-size-2 supernet loads into one plain process with full tables
    from recnas.train.warmup import load_supernet

    net = load_supernet(tmp_path / "warmup")
    table = net.sparse_arch.ebc.embedding_bags[f"t_{fm.sparse_names[0]}"].weight
    assert table.shape[0] == fm.sparse[0].num_embeddings and torch.isfinite(table).all()

    # resuming needs the world size the run was saved with
    from recnas.models import CTRModel
    from recnas.train.trainer import TrainConfig, train

    loader = ParquetBatchLoader(splits["train"], fm, batch_size=64, drop_last=True, limit=1600)
    with pytest.raises(ValueError, match="saved with world size 2, resumed with 1"):
        train(lambda d: CTRModel(fm, SPEC, device=d), loader, config=TrainConfig(progress=False),
              out_dir=tmp_path / "train")


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "recnas", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


def test_arch_train_cli_under_torchrun(synthetic: Path, tmp_path: Path, repo_root: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(SPEC.to_json())
    p = _torchrun(["arch", "train", "--data", str(synthetic), "--spec", str(spec_file), "--out",
                   str(tmp_path / "arch"), "--batch-size", "128", "--no-progress"], repo_root)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [ln for ln in p.stdout.splitlines() if "val logloss" in ln]
    assert len(lines) == 1, p.stdout  # printed by rank 0 only
    result = json.loads((tmp_path / "arch" / "result.json").read_text())
    assert result["describe"]["world_size"] == 2
    assert lines[0].startswith(f"arch {SPEC.key()}: val logloss {result['val']['logloss']:.5f} auc {result['val']['auc']:.5f}")
    # the torchrun run's metrics are those of its weights on every row of the split, as one plain
    # process scores them
    fm, splits = load_prepared(synthetic)
    for split, key in (("valid", "val"), ("test", "test")):
        parts = [ParquetBatchLoader(splits[split], fm, batch_size=4096, rank=r, world_size=2) for r in (0, 1)]
        want = one_process_metrics(Path(result["checkpoint"]), fm, parts)
        assert (result[key]["logloss"], result[key]["auc"]) == pytest.approx(want, rel=1e-6), split
        assert result[key]["rows"] == sum(p.num_rows for p in parts)
