"""``recnas supernet warmup``: warm a weight-sharing supernet up on a fraction of the training data.

Works as one process or under ``torchrun --nproc-per-node N -m recnas supernet warmup ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from recnas.train.defaults import TABLE_LR

__all__ = ["register", "quiet_libraries", "check_out_dir", "add_common_training_args", "add_bad_loss_args", "set_threads"]


def quiet_libraries() -> None:
    """Silences TorchRec's planner/DDP chatter (warnings and log lines) for command-line runs."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("torchrec", "root", "torch.distributed", "torch.fx"):
        logging.getLogger(None if name == "root" else name).setLevel(logging.ERROR)


def check_out_dir(out: Path, resume: bool) -> None:
    """A run directory that already holds checkpoints is only reused with ``--resume``."""
    from recnas.train.checkpoint import latest_checkpoint

    if not resume and latest_checkpoint(out) is not None:
        raise ValueError(
            f"{out} already holds a run (checkpoints/LATEST); pass --resume to continue it "
            "or choose a new --out"
        )


def add_bad_loss_args(p: argparse.ArgumentParser, note: str = "") -> None:
    """``--on-nan`` and ``--max-loss`` (the divergence guard), shared by every training command."""
    p.add_argument("--on-nan", choices=("raise", "skip"), default="raise",
                   help="NaN/inf loss, or one above --max-loss: stop with a resumable checkpoint (default) "
                        "or skip the step and count it")
    p.add_argument("--max-loss", type=float, default=None,
                   help="divergence guard: a batch log loss above this is handled like a NaN "
                        f"(default: recnas.train.trainer.MAX_LOSS, 10{note})")


def add_common_training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="prepared dataset directory (recnas data prepare)")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, results)")
    p.add_argument("--batch-size", type=int, default=512, help="per-process batch size (default 512)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training rows (default 1)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: use --epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="K", help="checkpoint every K steps (0: only at the end)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--stop-at-step", type=int, default=None, metavar="N",
                   help="save a checkpoint and exit after N steps (continue later with --resume)")
    add_bad_loss_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads per process (default: torch's; use 1 on a busy machine, "
                        "where spinning OpenMP threads slow the FBGEMM kernels down many times)")


def set_threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise ValueError(f"--threads must be >= 1, got {n}")
        import torch

        torch.set_num_threads(n)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("supernet", help="warm up a weight-sharing supernet", description=__doc__)
    sub = parser.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND", required=True)
    w = sub.add_parser("warmup", help="NASRec supernet warm-up on a fraction of the training data")
    add_common_training_args(w)
    w.add_argument("--space", required=True, help="search space name (spaces/*.yaml) or path to a space file")
    w.add_argument("--fraction", type=float, default=0.01, help="fraction of the training rows (default 0.01)")
    w.add_argument("--lr", type=float, default=TABLE_LR, help=f"peak Adagrad lr of the dense weights (default {TABLE_LR}, NASRec's)")
    w.add_argument("--table-lr", type=float, default=TABLE_LR, help=f"peak row-wise Adagrad lr of the tables (default {TABLE_LR})")
    w.add_argument("--full-path-fraction", type=float, default=0.2,
                   help="full-path probability falls 1 -> 0 over this fraction of the steps (default 0.2)")
    w.set_defaults(func=run_warmup)


def run_warmup(args: argparse.Namespace) -> int:
    from recnas.space.space import SearchSpace

    if not 0.0 < args.fraction <= 1.0:
        raise ValueError(f"--fraction must be in (0, 1], got {args.fraction}")
    space = SearchSpace.load(args.space)  # user errors first, before the heavy imports
    quiet_libraries()
    set_threads(args.threads)
    from recnas.data import ParquetBatchLoader, load_prepared
    from recnas.train.distributed import init_distributed, shutdown_distributed
    from recnas.train.loop import NonFiniteLossError
    from recnas.train.warmup import SUPERNET_FILE, WarmupConfig, warmup

    fm, splits = load_prepared(args.data)
    if "train" not in splits:
        raise FileNotFoundError(f"{args.data}: no train split")
    check_out_dir(args.out, args.resume)
    config = WarmupConfig(
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        table_lr=args.table_lr,
        full_path_fraction=args.full_path_fraction,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        **({"max_loss": args.max_loss} if args.max_loss is not None else {}),
        on_nan=args.on_nan,
        progress=not args.no_progress,
    )
    env = init_distributed()
    try:
        loader = ParquetBatchLoader(
            splits["train"], fm, batch_size=args.batch_size, shuffle=True, seed=args.seed,
            drop_last=True, fraction=args.fraction, rank=env.rank, world_size=env.world_size,
        )
        describe = {
            "data": str(Path(args.data).resolve()),
            "fraction": args.fraction,
            "batch_size": args.batch_size,
            "world_size": env.world_size,
        }
        try:
            r = warmup(fm, space, loader, config=config, out_dir=args.out, describe=describe,
                       resume=args.resume, stop_at_step=args.stop_at_step, env=env)
        except NonFiniteLossError as e:
            if env.is_main:
                print(f"recnas supernet warmup: error: {e}", file=sys.stderr)
            return 3
        if env.is_main:
            where = args.out / SUPERNET_FILE if r.supernet_dir else f"{args.out} (stopped; continue with --resume)"
            print(
                f"warm-up: steps {r.steps} (full path {r.full_path_steps} this run, skipped {r.skipped_steps}) "
                f"| {r.samples_per_s:,.0f} samples/s | supernet: {where}"
            )
    finally:
        shutdown_distributed()
    return 0
