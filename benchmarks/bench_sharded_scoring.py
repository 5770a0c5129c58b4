"""Peak memory per rank of scoring through the sharded supernet vs an unsharded copy on every rank.

A distributed search scores candidates either through the TorchRec-sharded supernet
(``estimator.sharded: auto`` under torchrun, :func:`recnas.study.sharded.sharded_scoring_context`)
or through an unsharded copy on each rank (``estimator.sharded: false``,
``recnas.train.warmup.load_supernet``). This benchmark makes tables large enough that one full
copy does not fit a per-rank budget and measures both ways, each in fresh processes:

1. synthetic Criteo rows (``--rows``) prepared with ``--hash-size`` rows per table (26 tables of
   the tiny space's width 8, float32: ``26 x hash x 8 x 4`` bytes for one copy);
2. a 2-rank sharded warm-up of the tiny space (``--steps`` steps of 128 rows a rank; gloo, CPU);
3. 2 fresh ranks score ``--candidates`` SiGeo candidates through the sharded supernet, then 2 fresh
   ranks score them with the unsharded copy; each rank reports its peak RSS (``VmHWM``) and its RSS
   just before loading the supernet (after imports and the scoring batches: the baseline).

The budget per rank is ``baseline + --budget x one copy`` (default 0.75: one copy does not fit).
It prints, per way and rank, the peak above the baseline as a multiple of one copy, whether it fits,
the table bytes the rank holds, and the largest score difference between the two ways.

    .venv/bin/python benchmarks/bench_sharded_scoring.py [--hash-size 200000] [--rows 4000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

WORLD = 2
BATCH = 128


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _init(rank: int, port: int) -> object:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RECNAS_DEVICE="cpu")
    torch.set_num_threads(1)
    from recnas.train.distributed import init_distributed

    return init_distributed()


def _warm(rank: int, port: int, data: str, out: str, steps: int) -> None:
    import torch.distributed as dist

    from recnas.data.loader import load_prepared
    from recnas.space import SearchSpace
    from recnas.study.context import warm_supernet
    from recnas.train.warmup import WarmupConfig

    env = _init(rank, port)
    fm, splits = load_prepared(data)
    warm_supernet(out, fm, SearchSpace.load("tiny"), splits["train"], data_dir=data, fraction=1.0,
                  batch_size=BATCH, config=WarmupConfig(max_steps=steps, lr=0.01, table_lr=0.01, progress=False),
                  section="bench", env=env, load=False)
    dist.destroy_process_group()


def _score(rank: int, port: int, data: str, out: str, way: str, n: int, result: str) -> None:
    import numpy as np
    import torch.distributed as dist

    from recnas.data.loader import load_prepared
    from recnas.estimators import ScoringContext, SiGeo
    from recnas.space import SearchSpace
    from recnas.study.context import scoring_batches
    from recnas.study.sharded import local_table_bytes, sharded_scoring_context
    from recnas.train.warmup import load_supernet

    env = _init(rank, port)
    fm, splits = load_prepared(data)
    train, valid = scoring_batches(splits, fm, batches=4, val_batches=1, batch_size=BATCH, section="bench")
    base = _rss_kib("VmRSS")
    t0 = time.perf_counter()
    if way == "sharded":
        ctx, sn = sharded_scoring_context(out, fm, train, valid, env)
        held = sn.local_table_bytes
    else:
        net = load_supernet(out)
        ctx = ScoringContext(fm, train, valid, supernet=net, init="inherit", device=torch.device("cpu"))
        held = local_table_bytes(net)
    load_s = time.perf_counter() - t0
    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(0)
    specs = [space.sample(rng) for _ in range(n)]
    scores = [float(x) for x in SiGeo().score(specs, ctx)]
    peak = _rss_kib("VmHWM")
    Path(result % rank).write_text(json.dumps({"rank": rank, "base_kib": base, "peak_kib": peak, "held": held,
                                        "load_s": load_s, "scores": scores}))
    dist.destroy_process_group()


def _spawn(fn, *args) -> None:
    mp.start_processes(fn, args=(_free_port(), *args), nprocs=WORLD, join=True, start_method="spawn")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hash-size", type=int, default=200_000, help="rows per table (26 tables)")
    ap.add_argument("--rows", type=int, default=4000, help="synthetic rows")
    ap.add_argument("--steps", type=int, default=4, help="warm-up steps")
    ap.add_argument("--candidates", type=int, default=3, help="SiGeo candidates scored each way")
    ap.add_argument("--budget", type=float, default=0.75,
                    help="per-rank budget above the baseline, as a multiple of one full copy of the tables")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()

    from recnas.data import prepare_synthetic

    tmp = tempfile.TemporaryDirectory(prefix="bench_sharded_") if a.dir is None else None
    root = Path(a.dir or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    data, out = root / "data", root / "warm"
    t0 = time.perf_counter()
    if not (data / "train").exists():
        prepare_synthetic(data, a.rows, seed=0, hash_size=a.hash_size)
    full = 26 * a.hash_size * 8 * 4
    if not (out / "supernet.json").exists():
        _spawn(_warm, str(data), str(out), a.steps)
    print(f"bench_sharded_scoring: {WORLD} gloo ranks, tiny space, 26 tables x {a.hash_size:,} rows x 8 "
          f"(one copy {full / 2**20:,.1f} MiB), {a.candidates} SiGeo candidates, budget per rank = baseline + "
          f"{a.budget:g} x one copy = {a.budget * full / 2**20:,.1f} MiB; prepared + warmed in "
          f"{time.perf_counter() - t0:.0f} s; torch threads 1, load average {os.getloadavg()[0]:.1f}")
    got: dict[str, list[dict]] = {}
    for way in ("sharded", "unsharded"):
        _spawn(_score, str(data), str(out), way, a.candidates, str(root / f"{way}_%d.json"))  # %d: the rank
        got[way] = []
    print(f"{'way':<10} {'rank':>4} {'tables held':>12} {'baseline':>10} {'peak':>10} {'peak-base':>10} "
          f"{'x copy':>7} {'fits':>5} {'load s':>7}")
    for way in ("sharded", "unsharded"):
        for r in range(WORLD):
            d = json.loads(Path(str(root / f"{way}_%d.json") % r).read_text())
            got[way].append(d)
            extra = (d["peak_kib"] - d["base_kib"]) * 1024
            fits = extra <= a.budget * full
            print(f"{way:<10} {r:>4} {d['held'] / 2**20:>9.1f} MiB {d['base_kib'] / 1024:>6.0f} MiB "
                  f"{d['peak_kib'] / 1024:>6.0f} MiB {extra / 2**20:>6.0f} MiB {extra / full:>7.2f} "
                  f"{'yes' if fits else 'NO':>5} {d['load_s']:>7.1f}")
    diff = max(abs(x - y) / max(abs(y), 1e-12) for r in range(WORLD)
               for x, y in zip(got["sharded"][r]["scores"], got["unsharded"][r]["scores"]))
    print(f"largest relative SiGeo score difference, sharded vs unsharded: {diff:.1e}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
