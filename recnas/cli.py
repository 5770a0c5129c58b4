"""The ``recnas`` command line: one entry point, subcommands registered by their packages.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func=callable(args) -> int`` on it. Imports happen only for the command being run, so
``recnas --help`` stays fast.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# Commands that run models. On CPU, denormal floats (which CTR models produce in quantity once
# activations and gradients get small) make float math tens of times slower; these commands flush
# them to zero (measured: one NASRec-Small training epoch 96 s -> 5.4 s, identical metrics).
MODEL_COMMANDS = frozenset({"supernet", "arch", "bench", "search", "export", "train", "demo"})

# OpenMP settings that say how torch's idle OpenMP threads wait; a user's are kept as they are.
OMP_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def passive_openmp_waits(environ: dict[str, str] | None = None) -> bool:
    """Makes torch's OpenMP threads sleep at once when idle (``OMP_WAIT_POLICY=PASSIVE``) unless
    the environment sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``; returns whether it set it.

    Effective only before ``import torch`` (libgomp, torch's OpenMP, reads the variables when it is
    loaded). Why: with neither variable set, libgomp's waiting threads spin 300,000 times (a few
    ms) at every barrier before they sleep -- unless the process runs more OpenMP threads than the
    machine has CPUs, when they spin 100 times. On a machine whose cores other processes share, a
    spinning thread waits for one the kernel has descheduled, and every small op of a model may
    cost a time slice. A search that warms its supernet up got the short spin by accident (its
    warm-up's training leaves a second OpenMP team alive in another thread: more OpenMP threads
    than CPUs); one that found the warmed supernet on disk had 2 threads on 2 CPUs, spun in full,
    and scored its candidates 5-100x slower on a busy 2-core machine
    (``benchmarks/bench_search_resume.py``).
    ``OMP_WAIT_POLICY=ACTIVE`` (or any ``GOMP_SPINCOUNT``) in the environment restores spinning.
    """
    env = os.environ if environ is None else environ
    if any(k in env for k in OMP_WAIT_SETTINGS) or (environ is None and "torch" in sys.modules):
        return False  # the user's choice, or too late for this process
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


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
    if next((a for a in argv if not a.startswith("-")), None) in MODEL_COMMANDS:
        passive_openmp_waits()  # before anything imports torch (``recnas.search`` does, for its parser)
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
