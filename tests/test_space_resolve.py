"""Specs say where their space is, and every command honours it (issue 17, item 4): a spec of a
space read from a YAML file carries the file (``space_file``); ``recnas arch train`` finds it or
takes ``--space``; ``recnas space validate`` refuses a spec of another space."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recnas.cli import build_parser
from recnas.cli import main as recnas_main
from recnas.space.space import SearchSpace, spaces_dir
from recnas.space.spec import ArchSpec
from recnas.train.arch_cli import load_spec_file, run_train


@pytest.fixture()
def file_space(tmp_path) -> Path:
    p = tmp_path / "spaces" / "my_space.yaml"
    p.parent.mkdir()
    p.write_text((spaces_dir() / "tiny.yaml").read_text().replace("name: tiny", "name: my_tiny"))
    return p


def _arch_train_args(spec: Path, tmp_path: Path, *extra: str) -> argparse.Namespace:
    argv = ["arch", "train", "--spec", str(spec), "--data", str(tmp_path / "no-data"), "--out", str(tmp_path / "o"), *extra]
    return build_parser(argv).parse_args(argv)


def test_spec_of_a_file_space_names_its_file_and_arch_train_resolves_it(tmp_path, file_space):
    space = SearchSpace.load(file_space)
    spec = space.sample(np.random.default_rng(0))
    assert spec.space == "my_tiny" and spec.space_file == str(file_space.resolve())
    assert ArchSpec.from_json(spec.to_json()) == spec
    assert spec.key() == dataclasses.replace(spec, space_file="").key()  # not part of the identity
    shipped = SearchSpace.load("tiny").sample(np.random.default_rng(0))
    assert "space_file" not in shipped.to_dict()  # shipped spaces' specs are unchanged
    f = tmp_path / "spec.json"
    f.write_text(spec.to_json())
    assert load_spec_file(f) == spec
    # arch train gets past the spec (to the missing data folder) with no --space
    with pytest.raises(FileNotFoundError, match="no-data"):
        run_train(_arch_train_args(f, tmp_path))


def test_a_spec_naming_an_unshipped_space_needs_space_and_a_wrong_space_is_refused(tmp_path, file_space):
    spec = SearchSpace.load(file_space).sample(np.random.default_rng(1))
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({k: v for k, v in spec.to_dict().items() if k != "space_file"}))  # as written before
    with pytest.raises(ValueError, match=rf"{f}: the spec's space 'my_tiny' is not a shipped space .* pass --space FILE"):
        load_spec_file(f)
    with pytest.raises(FileNotFoundError, match="no-data"):
        run_train(_arch_train_args(f, tmp_path, "--space", str(file_space)))
    with pytest.raises(ValueError, match=r"the spec is of space 'my_tiny', but tiny is space 'tiny'"):
        load_spec_file(f, "tiny")
    moved = tmp_path / "moved.json"
    moved.write_text(spec.to_json())
    shutil.rmtree(file_space.parent)
    with pytest.raises(ValueError, match=rf"space file {file_space.resolve()} .* does not exist; pass --space FILE"):
        load_spec_file(moved)


def test_space_validate_honours_the_spec_space_field(tmp_path, capsys):
    spec = SearchSpace.load("tiny").sample(np.random.default_rng(2))
    f = tmp_path / "spec.json"
    f.write_text(dataclasses.replace(spec, space="ctr_extended").to_json())  # fits tiny, but says ctr_extended
    assert recnas_main(["space", "validate", "tiny", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the spec is of space 'ctr_extended', not 'tiny'" in err and str(f) in err
    f.write_text(spec.to_json())
    assert recnas_main(["space", "validate", "tiny", str(f)]) == 0
    assert "ok, in space 'tiny'" in capsys.readouterr().out
