"""``recnas arch train``: train one architecture spec from scratch and report log loss and AUC.

Works as one process or under ``torchrun --nproc-per-node N -m recnas arch train ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recnas.train.cli import add_common_training_args, check_out_dir, quiet_libraries, set_threads

__all__ = ["register", "load_spec_file"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("arch", help="train an architecture spec from scratch", description=__doc__)
    sub = parser.add_subparsers(dest="arch_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser("train", help="train a spec from scratch; prints validation/test log loss and AUC")
    add_common_training_args(t)
    t.add_argument("--spec", required=True, type=Path, help="architecture spec JSON (recnas space sample)")
    t.add_argument("--space", default=None, metavar="SPACE",
                   help="the spec's search space (a shipped name or a YAML file); default: the one the spec names "
                        "(its space_file, else its shipped space)")  # fmt: skip
    t.add_argument("--fraction", type=float, default=1.0, help="fraction of the training rows (default 1)")
    t.add_argument("--dense-lr", type=float, default=None, help="Adagrad lr of the dense weights (default: DENSE_LR)")
    t.add_argument("--dense-eps", type=float, default=None, help="Adagrad epsilon of the dense weights (default: DENSE_EPS)")
    t.add_argument("--table-lr", type=float, default=None, help="row-wise Adagrad lr of the tables (default: TABLE_LR, 0.12)")
    t.set_defaults(func=run_train)


def load_spec_file(path: Path, space: str | None = None):  # -> ArchSpec
    """Reads a spec JSON file; errors name the file. The spec is validated in its space
    (``space`` if given, else the one the spec names: ``recnas.space.space.space_of``)."""
    from recnas.space.space import space_of
    from recnas.space.spec import ArchSpec

    if not path.exists():
        raise FileNotFoundError(f"spec file {path} does not exist")
    try:
        spec = ArchSpec.from_json(path.read_text())
        found = space_of(spec, space)
        if found is not None:
            found.validate(spec)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return spec


def run_train(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec, args.space)  # user errors first, before the heavy imports
    from recnas.data import load_prepared

    fm, splits = load_prepared(args.data)
    quiet_libraries()
    set_threads(args.threads)
    import torch

    from recnas.models import CTRModel
    from recnas.train.distributed import init_distributed, shutdown_distributed
    from recnas.train.loop import NonFiniteLossError
    from recnas.train.scratch import TrainRecipe, train_spec
    from recnas.train.trainer import DENSE_LR, TABLE_LR

    missing = [s for s in ("train", "valid") if s not in splits]
    if missing:
        raise FileNotFoundError(f"{args.data}: missing splits {missing}")
    try:  # a spec that does not fit the feature map is rejected before any process group starts
        CTRModel(fm, spec, device=torch.device("meta"))
    except ValueError as e:
        raise ValueError(f"{args.spec}: does not fit the feature map of {args.data}: {e}") from None
    check_out_dir(args.out, args.resume)
    recipe = TrainRecipe(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, fraction=args.fraction,
        dense_lr=args.dense_lr if args.dense_lr is not None else DENSE_LR,
        table_lr=args.table_lr if args.table_lr is not None else TABLE_LR,
        checkpoint_every=args.checkpoint_every,
        **({"dense_eps": args.dense_eps} if args.dense_eps is not None else {}),
    )
    env = init_distributed()
    try:
        data = Path(args.data).resolve()
        try:
            r = train_spec(
                spec, args.seed, recipe, data, fm, splits, args.out, env, resume=args.resume,
                stop_at_step=args.stop_at_step, progress=not args.no_progress, on_nan=args.on_nan,
                max_loss=args.max_loss,
                describe={"feature_map": fm.to_dict(), "fraction": args.fraction, "batch_size": args.batch_size,
                          "world_size": env.world_size},
            )
        except NonFiniteLossError as e:
            if env.is_main:
                print(f"recnas arch train: error: {e}", file=sys.stderr)
            return 3
        if env.is_main:
            if r.val is None:
                print(f"arch {spec.key()}: stopped at step {r.steps}; continue with --resume")
            else:
                line = (
                    f"arch {spec.key()}: val logloss {r.val.logloss:.5f} auc {r.val.auc:.5f} "
                    f"(label-rate baseline {r.val.baseline_logloss:.5f})"
                )
                if r.test is not None:
                    line += f" | test logloss {r.test.logloss:.5f} auc {r.test.auc:.5f}"
                line += f" | steps {r.steps} skipped {r.skipped_steps} | {r.samples_per_s:,.0f} samples/s"
                print(line)
    finally:
        shutdown_distributed()
    return 0
