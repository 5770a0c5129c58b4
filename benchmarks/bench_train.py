"""Training throughput: supernet warm-up and a standalone CTRModel beside TorchRec's DLRM.

All three run through recnas's own training code (``recnas.train.warmup`` / ``recnas.train.trainer``)
on the same fused DMP path (world size 1, gloo, ``apply_optimizer_in_backward(RowWiseAdagrad)``),
with the same data: 26 tables x ``--rows`` ids x dim 16, 13 dense features, batch 512, random ids
(pre-generated; generation is not timed). Each model runs in its own subprocess so that its peak RSS
is its own. Goals: the warm-up >= 0.8x the rate of the DLRM of the warm-up's FLOPs (issue 15), the
standalone model >= 0.8x the usual DLRM's (issue 3); the last lines say whether each is met.

Two DLRM references: the usual one (bottom 512-256-16, top 512-256-1, ~0.93 MFLOP/example) and one
whose top MLP is widened until its FLOPs/example equal the mean FLOPs of the warm-up's random
NASRec-Small subnets (~4.9 MFLOP, 5x the first): the first answers "how much slower than a DLRM is a
warm-up step", the second "how much of that is the size of the subnets, and how much our overhead".

    .venv/bin/python benchmarks/bench_train.py              # ~2 minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_train.py --steps 60 --rows 100000 --threads 1
    .venv/bin/python benchmarks/bench_train.py --device cuda --json out.json   # the same on a GPU
    .venv/bin/python benchmarks/bench_train.py --reference-path --repeats 3   # before/after, alternated

``--reference-path`` also runs the warm-up with its full-tensor dense update
(``warmup(sliced_updates=False)``, the path before :mod:`recnas.train.sliced`; the same weights bit
for bit) in the same run, so that the speed-up is measured against it under the same load.
``--repeats N`` runs every model N times, alternating (each round runs all models once), and
reports each model's median rate: on a shared machine the load drifts within minutes, and
alternating spreads it over all models alike.

``--device auto|cpu|cuda`` (sets ``RECNAS_DEVICE`` for the model processes; without it they follow
``RECNAS_DEVICE``, else ``auto``: CUDA where available, as every recnas command) runs all four on
that device: on CUDA the process group is NCCL and the tables use FBGEMM's CUDA kernels, and the
table also gives each model's peak GPU memory.
``--space`` swaps NASRec-Small for another space (``benchmarks/gpu_check.sh --cpu-dry-run`` uses
``tiny``); ``--json`` writes the figures and ratios to a file.

``--lr-sweep PREPARED_DIR`` instead measures validation log loss against the dense Adagrad lr (the
measurement behind ``recnas.train.trainer.DENSE_LR``), e.g. on the shared Criteo rows prepared with
``recnas data prepare --format criteo --input ../shared/data/criteo_dac_train_first10k.txt.gz
--hash-size 2000 --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

MODELS = ("dlrm", "dlrm_flops", "warmup", "standalone")
REFERENCE = "warmup_full"  # the warm-up with the full-tensor dense update (--reference-path)
WARMUP_GOAL = 0.8  # warm-up samples/s over the FLOP-matched DLRM's (issue 15)
STANDALONE_GOAL = 0.8  # standalone samples/s over the usual DLRM's (issue 3)
DLRM_BOTTOM, DLRM_TOP = [512, 256, 16], [512, 256, 1]


def _feature_map(rows: int):
    from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature

    return FeatureMap(
        "bench",
        tuple(DenseFeature(f"I{i}") for i in range(1, 14)),
        tuple(SparseFeature(f"C{i}", rows) for i in range(1, 27)),
    )


def _batches(fm, n: int, batch_size: int) -> list:
    import torch

    from recnas.data.batch import random_batch

    g = torch.Generator().manual_seed(0)
    return [random_batch(fm, batch_size, g) for _ in range(n)]


def dlrm_flops_per_example(num_dense: int, num_sparse: int, e: int, bottom: list[int], top: list[int]) -> int:
    """Multiply-adds x 2 of TorchRec's DLRM: bottom MLP, pairwise dot interaction, top MLP."""
    macs, width = 0, num_dense
    for w in bottom:
        macs, width = macs + width * w, w
    f = num_sparse + 1
    pairs = f * (f - 1) // 2
    macs += pairs * e
    width = e + pairs
    for w in top:
        macs, width = macs + width * w, w
    return 2 * macs


def flops_matched_top(target: float) -> list[int]:
    """Top MLP ``[w, w // 2, 1]`` of a DLRM (same bottom MLP) whose FLOPs/example come closest to
    ``target`` -- a reference of the warm-up's own size."""
    w = min(range(16, 8192, 8), key=lambda w: abs(dlrm_flops_per_example(13, 26, 16, DLRM_BOTTOM, [w, w // 2, 1]) - target))
    return [w, w // 2, 1]


def mean_subnet_flops(fm, space, n: int = 50) -> float:
    """Mean FLOPs/example of ``n`` random subnets (the warm-up's sampling distribution)."""
    import numpy as np
    import torch

    from recnas.models import CTRModel

    rng = np.random.default_rng(0)
    return float(np.mean([CTRModel(fm, space.sample(rng), device=torch.device("meta")).flops_per_example()
                          for _ in range(n)]))


def run_one(model: str, steps: int, warm: int, rows: int, batch_size: int, space_name: str = "nasrec_small") -> dict:
    """Trains ``model`` for ``warm`` untimed + ``steps`` timed steps; returns figures."""
    import torch

    from recnas.models import CTRModel
    from recnas.space.presets import dlrm_like
    from recnas.space.space import SearchSpace
    from recnas.train.baselines import DLRMBaseline
    from recnas.train.trainer import TrainConfig, train
    from recnas.train.warmup import WarmupConfig, warmup

    from recnas.device import resolve_device

    fm = _feature_map(rows)
    space = SearchSpace.load(space_name)
    data = _batches(fm, 16, batch_size)
    device = resolve_device()
    out = {"model": model, "device": device}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()

    def loader(n: int) -> list:
        return [data[i % len(data)] for i in range(n)]

    with tempfile.TemporaryDirectory() as d:
        if model in ("warmup", REFERENCE):
            # untimed first segment (plan compilation caches, allocator), then a timed resumed one
            # lr 0.01, not NASRec's 0.12: on these random labels 0.12 reaches a NaN loss within ~20
            # steps (the run stops there); the lr does not change the cost of a step.
            cfg = WarmupConfig(max_steps=warm + steps, lr=0.01, table_lr=0.01, progress=False)
            sliced = model == "warmup"
            warmup(fm, space, loader(warm + steps), config=cfg, out_dir=d, stop_at_step=warm, sliced_updates=sliced)
            t0 = time.perf_counter()
            r = warmup(fm, space, loader(warm + steps), config=cfg, out_dir=d, sliced_updates=sliced)
            out["wall_s_incl_final_save"] = time.perf_counter() - t0
            out["full_path_steps"] = r.full_path_steps
            out["flops_per_example"] = mean_subnet_flops(fm, space)
        else:
            if model in ("dlrm", "dlrm_flops"):
                top = DLRM_TOP if model == "dlrm" else flops_matched_top(mean_subnet_flops(fm, space))
                build = lambda dev: DLRMBaseline(fm, 16, DLRM_BOTTOM, top, device=dev)  # noqa: E731
                out["flops_per_example"] = dlrm_flops_per_example(13, 26, 16, DLRM_BOTTOM, top)
                out["top"] = top
            else:
                spec = dlrm_like(space)
                build = lambda dev: CTRModel(fm, spec, device=dev)  # noqa: E731
                m = CTRModel(fm, spec, device=torch.device("meta"))
                out["flops_per_example"] = m.flops_per_example()
            cfg = TrainConfig(max_steps=warm + steps, progress=False)
            train(build, loader(warm + steps), config=cfg, out_dir=d, stop_at_step=warm)
            r = train(build, loader(warm + steps), config=cfg, out_dir=d)
        dense_params = sum(
            p.numel() for n, p in build_meta(model, fm, space).named_parameters() if "embedding_bags" not in n
        )
    out.update(
        samples_per_s=r.samples_per_s,
        seconds=r.seconds,
        steps=steps,
        dense_params=dense_params,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def build_meta(model: str, fm, space):
    import torch

    from recnas.models import CTRModel, Supernet
    from recnas.space.presets import dlrm_like
    from recnas.train.baselines import DLRMBaseline

    meta = torch.device("meta")
    if model in ("dlrm", "dlrm_flops"):
        top = DLRM_TOP if model == "dlrm" else flops_matched_top(mean_subnet_flops(fm, space))
        return DLRMBaseline(fm, 16, DLRM_BOTTOM, top, device=meta)
    if model in ("warmup", REFERENCE):
        return Supernet(fm, space, device=meta)
    return CTRModel(fm, dlrm_like(space), device=meta)


def lr_sweep(data: str, lrs: tuple[float, ...] = (0.005, 0.02, 0.05, 0.12)) -> None:
    """Validation log loss of a small 2-block CTRModel after 1 epoch (batch 128) per dense lr."""
    from recnas.data import ParquetBatchLoader, load_prepared
    from recnas.models import CTRModel
    from recnas.space.spec import ArchSpec, BlockSpec
    from recnas.train.trainer import TrainConfig, train

    spec = ArchSpec(
        embedding_dim=8,
        blocks=(
            BlockSpec("fc", "efc", dense_dim=16, sparse_dim=8, dense_in=(0,), sparse_in=(0,), deep_fm=True),
            BlockSpec("dot", "efc", dense_dim=16, sparse_dim=4, dense_in=(0, 1), sparse_in=(1,)),
        ),
    )
    fm, splits = load_prepared(data)
    print(f"dense lr sweep on {data}: 2-block CTRModel, 1 epoch, batch 128, table lr 0.12")
    for lr in lrs:
        train_l = ParquetBatchLoader(splits["train"], fm, batch_size=128, shuffle=True, drop_last=True)
        val_l = ParquetBatchLoader(splits["valid"], fm, batch_size=1024)
        with tempfile.TemporaryDirectory() as d:
            r = train(lambda dev: CTRModel(fm, spec, device=dev), train_l, val_loader=val_l,
                      config=TrainConfig(epochs=1, dense_lr=lr, progress=False), out_dir=d)
        print(f"  dense lr {lr:<6} val logloss {r.val.logloss:.4f}  auc {r.val.auc:.4f}  "
              f"(label-rate baseline {r.val.baseline_logloss:.4f})", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60, help="timed steps of DLRM and the standalone model")
    ap.add_argument("--warmup-steps", type=int, default=15, help="timed steps of the supernet warm-up")
    ap.add_argument("--warm", type=int, default=5, help="untimed steps first")
    ap.add_argument("--rows", type=int, default=100_000, help="rows per table")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads per model process (2 threads on a loaded 2-core "
                         "machine make the FBGEMM kernels spin: 10x slower)")
    ap.add_argument("--no-flush-denormal", action="store_true",
                    help="keep denormal floats (the recnas CLI flushes them; applies to every model here)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"),
                    help="where the models run (sets RECNAS_DEVICE for the model processes; default: as "
                         "RECNAS_DEVICE says, else auto = CUDA if available)")
    ap.add_argument("--space", default="nasrec_small", help="the warm-up's search space (default nasrec_small)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures and ratios to FILE")
    ap.add_argument("--lr-sweep", metavar="PREPARED_DIR", help="measure val log loss vs dense lr instead")
    ap.add_argument("--reference-path", action="store_true",
                    help="also run the warm-up with the full-tensor dense update (the path before sliced "
                         "updates; same weights) in the same run")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run every model this many times, alternating, and report medians (default 1)")
    ap.add_argument("--one", choices=MODELS + (REFERENCE,), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lr_sweep:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        lr_sweep(args.lr_sweep)
        return 0

    if args.one:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        import torch

        torch.set_num_threads(args.threads)
        torch.set_flush_denormal(not args.no_flush_denormal)
        print(json.dumps(run_one(args.one, args.steps, args.warm, args.rows, args.batch_size, args.space)))
        return 0
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")

    import statistics

    models = MODELS + ((REFERENCE,) if args.reference_path else ())
    runs: dict[str, list[dict]] = {m: [] for m in models}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for model in models:
            steps = args.warmup_steps if model in ("warmup", REFERENCE) else args.steps
            cmd = [sys.executable, __file__, "--one", model, "--steps", str(steps), "--warm", str(args.warm),
                   "--rows", str(args.rows), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--space", args.space]
            cmd += ["--no-flush-denormal"] if args.no_flush_denormal else []
            env = {**os.environ, "PYTHONWARNINGS": "ignore", **({"RECNAS_DEVICE": args.device} if args.device else {})}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return proc.returncode
            runs[model].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = {}
    for model, rs in runs.items():
        r = dict(rs[0])
        r["samples_per_s_runs"] = [x["samples_per_s"] for x in rs]
        r["samples_per_s"] = statistics.median(r["samples_per_s_runs"])
        r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in rs)
        results[model] = r
    load_after = os.getloadavg()[0]

    ref = results["dlrm"]["samples_per_s"]
    device = results["dlrm"].get("device", "cpu")
    where = (f"NCCL, CUDA on {results['dlrm'].get('gpu', 'a GPU')}" if device == "cuda"
             else "gloo, CPU")
    print(f"bench_train: batch {args.batch_size}, 26 tables x {args.rows:,} x 16, {args.steps} timed steps "
          f"({args.warmup_steps} for the warm-up), {args.threads} threads, world size 1 (DMP fused path, {where}), "
          f"denormals {'kept' if args.no_flush_denormal else 'flushed'}, "
          f"{args.repeats} alternated run{'s' if args.repeats > 1 else ''} per model (median); "
          f"1-min load average {load:.1f} before, {load_after:.1f} after")
    gpu = device == "cuda"
    print(f"{'model':<40}{'samples/s':>12}{'vs DLRM':>10}{'dense params':>14}{'MFLOP/ex':>10}"
          f"{'GFLOP/s':>9}{'peak RSS MB':>13}" + (f"{'peak GPU MB':>13}" if gpu else ""))
    names = {
        "dlrm": "TorchRec DLRM (reference)",
        "dlrm_flops": "TorchRec DLRM, warm-up's FLOPs",
        "warmup": f"supernet warm-up ({args.space})",
        REFERENCE: "  the same, full-tensor update (before)",
        "standalone": f"CTRModel dlrm_like({args.space})",
    }
    for model in models:
        r = results[model]
        ratio = r["samples_per_s"] / ref
        mflop = r["flops_per_example"] / 1e6
        print(f"{names[model]:<40}{r['samples_per_s']:>12,.0f}{ratio:>9.2f}x"
              f"{r['dense_params']:>14,}{mflop:>10.2f}{mflop * r['samples_per_s'] / 1e3:>9.1f}"
              f"{r['peak_rss_mb']:>13,.0f}" + (f"{r.get('peak_gpu_mb', 0):>13,.0f}" if gpu else ""))
    same = results["dlrm_flops"]
    warm_ratio = results["warmup"]["samples_per_s"] / same["samples_per_s"]
    stand_ratio = results["standalone"]["samples_per_s"] / ref

    def verdict(x: float, goal: float) -> str:
        return "met" if x >= goal else "NOT met"

    print(f"TorchRec DLRM, warm-up's FLOPs: top MLP {same['top']}")
    print(f"warm-up vs the DLRM of its FLOPs: {warm_ratio:.2f}x   goal >={WARMUP_GOAL}x: {verdict(warm_ratio, WARMUP_GOAL)}")
    if REFERENCE in results:
        old = results[REFERENCE]["samples_per_s"]
        print(f"  full-tensor update (before): {old / same['samples_per_s']:.2f}x; sliced updates run at "
              f"{results['warmup']['samples_per_s'] / old:.2f}x its rate")
    print(f"standalone vs DLRM: {stand_ratio:.2f}x ({(results['standalone']['samples_per_s'] * results['standalone']['flops_per_example']) / (ref * results['dlrm']['flops_per_example']):.2f}x its FLOP/s)"
          f"   goal >={STANDALONE_GOAL}x: {verdict(stand_ratio, STANDALONE_GOAL)}")
    if "full_path_steps" in results["warmup"]:
        print(f"warm-up: {results['warmup']['full_path_steps']} of {args.warmup_steps} timed steps trained the full path "
              "(p falls 1 -> 0 over the first 20 % of the run)")
    if args.json:
        ratios = {
            "warmup_vs_dlrm": results["warmup"]["samples_per_s"] / ref,
            "warmup_vs_dlrm_flops": warm_ratio,
            "standalone_vs_dlrm": stand_ratio,
        }
        if REFERENCE in results:
            ratios["warmup_full_vs_dlrm_flops"] = results[REFERENCE]["samples_per_s"] / same["samples_per_s"]
        settings = {k: getattr(args, k) for k in ("steps", "warmup_steps", "warm", "rows", "batch_size", "threads",
                                                  "device", "space", "reference_path", "repeats")}
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "device": device, "load_before": load, "load_after": load_after,
                       "models": results, "ratios": ratios}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
