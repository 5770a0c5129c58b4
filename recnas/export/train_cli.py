"""``recnas train``: production training of an exported architecture, or of a baseline.

    recnas train EXPORT_DIR --data PREPARED --out OUT [--init scratch|inherited] [--epochs N]
                 [--batch-size B] [--early-stopping P] [--seed S] [--max-loss L] [--resume]
    recnas train --baseline dlrm|deepfm|dcnv2 --data PREPARED --out OUT [...]

Works as one process or under ``torchrun --nproc-per-node N -m recnas train ...`` (TorchRec
DistributedModelParallel). Evaluates validation and test log loss / AUC after every epoch, writes the
trained model as an export folder to OUT/model and prints a results table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recnas.train.defaults import TABLE_LR

__all__ = ["register", "run_train"]


def register(subparsers: argparse._SubParsersAction) -> None:
    from recnas.export.names import BASELINE_SPACE, BASELINES
    from recnas.train.cli import add_bad_loss_args

    p = subparsers.add_parser(
        "train", help="train an exported architecture (or a baseline) on prepared data",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("export_dir", type=Path, nargs="?", metavar="EXPORT_DIR", help="an export folder (recnas export)")
    p.add_argument("--baseline", choices=BASELINES, default=None, help="train this baseline instead of an export")
    p.add_argument("--space", default=BASELINE_SPACE, help=f"space of the deepfm/dcnv2 presets (default {BASELINE_SPACE})")
    p.add_argument("--data", required=True, type=Path, help="prepared dataset folder (recnas data prepare)")
    p.add_argument("--out", required=True, type=Path, help="run folder; the trained export goes to OUT/model")
    p.add_argument("--init", choices=("scratch", "inherited"), default="scratch",
                   help="fresh weights (default) or the export's (e.g. inherited from the supernet)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the training rows (default 1)")
    p.add_argument("--batch-size", type=int, default=512, help="rows per step and process (default 512)")
    p.add_argument("--early-stopping", type=int, default=0, metavar="P",
                   help="stop after P epochs without a lower validation log loss; export the best epoch (default off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fraction", type=float, default=1.0, help="fraction of the training rows (default 1)")
    p.add_argument("--dense-lr", type=float, default=None, help="Adagrad lr of the dense weights (default: the trainer's)")
    p.add_argument("--dense-eps", type=float, default=None, help="Adagrad epsilon of the dense weights (default: recnas.train.defaults.DENSE_EPS)")
    p.add_argument("--table-lr", type=float, default=TABLE_LR, help=f"row-wise Adagrad lr of the tables (default {TABLE_LR})")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="K", help="also checkpoint every K steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--stop-at-step", type=int, default=None, metavar="N",
                   help="checkpoint and exit after N steps (continue with --resume)")
    add_bad_loss_args(p, note="; both may change on --resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    # user errors first, before the heavy imports
    if (args.export_dir is None) == (args.baseline is None):
        raise ValueError("give either EXPORT_DIR or --baseline NAME (not both)")
    if args.baseline is not None and args.init != "scratch":
        raise ValueError("--init inherited needs an EXPORT_DIR (baselines train from scratch)")
    if args.export_dir is not None and not (args.export_dir / "manifest.json").is_file():
        raise FileNotFoundError(f"export folder not found: {args.export_dir} (no manifest.json; run `recnas export`)")
    if not (args.data / "feature_map.json").is_file():
        raise FileNotFoundError(f"prepared dataset folder not found: {args.data} (no feature_map.json; run `recnas data prepare`)")
    if args.resume and not (args.out / "run.json").is_file():
        raise ValueError(f"--resume: {args.out} holds no training run (no run.json); drop --resume to start one")

    from recnas.train.cli import quiet_libraries

    quiet_libraries()
    from recnas.export.production import (
        ProdTrainConfig,
        format_history,
        format_results,
        train_baseline,
        train_export,
    )
    from recnas.train.distributed import init_distributed, shutdown_distributed
    from recnas.train.loop import NonFiniteLossError
    from recnas.train.trainer import DENSE_LR

    config = ProdTrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, early_stopping_patience=args.early_stopping, seed=args.seed,
        fraction=args.fraction, dense_lr=args.dense_lr if args.dense_lr is not None else DENSE_LR,
        table_lr=args.table_lr, checkpoint_every=args.checkpoint_every, on_nan=args.on_nan,
        **({"dense_eps": args.dense_eps} if args.dense_eps is not None else {}),
        **({"max_loss": args.max_loss} if args.max_loss is not None else {}),
        progress=not args.no_progress,
    )
    common = dict(out_dir=args.out, config=config, resume=args.resume, stop_at_step=args.stop_at_step)
    env = init_distributed()
    try:
        try:
            if args.baseline is not None:
                r = train_baseline(args.baseline, args.data, space=args.space, **common)
            else:
                r = train_export(args.export_dir, args.data, init=args.init, **common)
        except NonFiniteLossError as e:
            if env.is_main:
                print(f"recnas train: error: {e}", file=sys.stderr)
            return 3
        if env.is_main:
            if r.status == "interrupted":
                print(f"{r.name}: stopped at step {r.steps} after {len(r.history)} epoch(s); continue with --resume")
            else:
                print(format_history(r))
                print()
                print(format_results([r]))
                print(f"\ntrained model: {r.export_dir}")
    finally:
        shutdown_distributed()
    return 0
