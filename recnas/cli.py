"""The ``recnas`` command line: one entry point, subcommands registered by their packages.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=callable(args) -> int`` on it. Imports happen only for the command being run, so
``recnas --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

# Commands that run models. On CPU, denormal floats (which CTR models produce in quantity once
# activations and gradients get small) make float math tens of times slower; these commands flush
# them to zero (measured: one NASRec-Small training epoch 96 s -> 5.4 s, identical metrics).
MODEL_COMMANDS = frozenset({"supernet", "arch", "bench", "search", "export", "train", "demo"})

# (command, module, help). The module's register() adds the parser named `command`.
COMMANDS: list[tuple[str, str, str]] = [
    ("data", "recnas.data.cli", "prepare CTR datasets (Criteo, Criteo 1TB, Avazu) and synthesise data"),
    ("space", "recnas.space.cli", "inspect search spaces; sample and validate architecture specs"),
    ("supernet", "recnas.train.cli", "warm up a weight-sharing supernet on a fraction of the training data"),
    ("arch", "recnas.train.arch_cli", "train one architecture spec from scratch and evaluate it"),
    ("bench", "recnas.bench.cli", "ground-truth benchmark: build (train sampled architectures), compare estimators"),
    ("search", "recnas.search.cli", "search a space for the best architectures (a pipeline file)"),
    ("export", "recnas.export.cli", "export the best architectures of a search run as standalone models"),
    ("train", "recnas.export.train_cli", "train an exported architecture (or a baseline) on prepared data"),
    ("demo", "recnas.demo", "the whole job on built-in synthetic data: search, export, train, compare with DLRM"),
]


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recnas", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"recnas {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, module, help_ in COMMANDS:
        if wanted == name:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=help_, add_help=False)
    return parser


def _version() -> str:
    from recnas import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.command in MODEL_COMMANDS:
        import torch

        torch.set_flush_denormal(True)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("recnas: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:  # user errors: one clear line, no traceback
        print(f"recnas {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk (or quota, or file-size limit): one line, exit 1
        if e.errno not in _DISK_FULL:
            raise
        print(f"recnas {args.command}: error: {e}", file=sys.stderr)
        return 1


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
