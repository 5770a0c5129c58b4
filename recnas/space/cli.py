"""``recnas space``: inspect search spaces; sample, validate and build preset architecture specs.

Examples::

    recnas space show nasrec_small
    recnas space sample tiny -n 5 --seed 0 > specs.jsonl
    recnas space validate nasrec_full arch.json
    recnas space preset ctr_extended dcnv2 > dcnv2.json

``SPACE`` is a shipped space name (``recnas space show --help`` lists them) or a path to a YAML file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from recnas.space import features as F
from recnas.space.space import SearchSpace, available_spaces
from recnas.space.spec import ArchSpec, SpecError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``space`` command and its subcommands to the ``recnas`` parser."""
    names = ", ".join(available_spaces())
    space_help = f"a shipped space ({names}) or a path to a space YAML file"
    p = subparsers.add_parser("space", help="inspect search spaces; sample and validate architecture specs",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="space_command", metavar="SUBCOMMAND", required=True)

    show = sub.add_parser("show", help="print a space's choices and its number of architectures")
    show.add_argument("space", metavar="SPACE", help=space_help)
    show.set_defaults(func=_show)

    sample = sub.add_parser("sample", help="print N random architectures, one JSON spec a line")
    sample.add_argument("space", metavar="SPACE", help=space_help)
    sample.add_argument("-n", "--num", type=int, default=1, help="how many specs (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(func=_sample)

    validate = sub.add_parser("validate", help="check a JSON spec file against a space (exit 0 if inside)")
    validate.add_argument("space", metavar="SPACE", help=space_help)
    validate.add_argument("spec", metavar="SPEC.json", type=Path, help="architecture spec (JSON)")
    validate.set_defaults(func=_validate)

    from recnas.space.presets import PRESETS

    preset = sub.add_parser("preset", help="print a hand-designed model (DLRM, DeepFM, ...) as a spec of a space")
    preset.add_argument("space", metavar="SPACE", help=space_help)
    preset.add_argument("name", metavar="NAME", choices=sorted(PRESETS), help=f"one of {sorted(PRESETS)}")
    preset.set_defaults(func=_preset)


def _show(args: argparse.Namespace) -> int:
    space = SearchSpace.load(args.space)
    print(f"space: {space.name}")
    if space.description:
        print(f"description: {space.description}")
    for key, value in space.to_dict().items():
        if key in ("name", "description"):
            continue
        if isinstance(value, list):
            value = "[" + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in value) + "]"
        print(f"{key}: {value}")
    print(f"size: {space.size():.4g} architectures")
    print(f"encoding_size: {F.encoding_size(space)}  graph: V={F.graph_num_nodes(space)} "
          f"F={F.graph_feature_size(space)}  tokens: {F.token_length(space)} (vocab {F.vocab_size(space)})")
    return 0


def _sample(args: argparse.Namespace) -> int:
    if args.num < 0:
        raise SpecError(f"-n: expected a non-negative count, got {args.num}")
    space = SearchSpace.load(args.space)
    rng = np.random.default_rng(args.seed)
    for _ in range(args.num):
        print(space.sample(rng).to_json())
    return 0


def _validate(args: argparse.Namespace) -> int:
    space = SearchSpace.load(args.space)
    try:
        text = args.spec.read_text()
    except OSError as e:
        raise SpecError(f"{args.spec}: cannot read: {e.strerror or e}") from None
    try:
        spec = ArchSpec.from_json(text)
        if spec.space and spec.space != space.name:
            raise SpecError(f"the spec is of space {spec.space!r}, not {space.name!r}; validate it against its own space")
        space.validate(spec)
    except SpecError as e:
        raise SpecError(f"{args.spec}: {e}") from None
    print(f"{args.spec}: ok, in space {space.name!r} (key {spec.key()})")
    return 0


def _preset(args: argparse.Namespace) -> int:
    from recnas.space.presets import PRESETS

    space = SearchSpace.load(args.space)
    print(PRESETS[args.name](space).to_json())
    return 0
