"""``recnas space`` in a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from recnas.space import ArchSpec, SearchSpace, features


def recnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recnas", "space", *args], capture_output=True, text=True,
                          timeout=60)


def test_show_prints_choices_and_size() -> None:
    r = recnas("show", "nasrec_full")
    assert r.returncode == 0, r.stderr
    space = SearchSpace.load("nasrec_full")
    assert "dense_ops: [fc, dot, gating, sum]" in r.stdout
    assert "sparse_dims: [16, 32, 48, 64]" in r.stdout
    assert f"size: {space.size():.4g} architectures" in r.stdout
    # the featurizers' sizes (recnas.space.features)
    assert (f"encoding_size: {features.encoding_size(space)}  graph: V={features.graph_num_nodes(space)} "
            f"F={features.graph_feature_size(space)}  tokens: {features.token_length(space)} "
            f"(vocab {features.vocab_size(space)})") in r.stdout
    assert "encoding_size: 253  graph: V=18 F=25  tokens: 99 (vocab 38)" in r.stdout


def test_sample_prints_valid_reproducible_json_lines() -> None:
    r = recnas("sample", "tiny", "-n", "4", "--seed", "7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4
    space = SearchSpace.load("tiny")
    rng = np.random.default_rng(7)
    assert [ArchSpec.from_json(x) for x in lines] == [space.sample(rng) for _ in range(4)]
    assert recnas("sample", "tiny", "-n", "4", "--seed", "7").stdout == r.stdout
    assert recnas("sample", "tiny", "-n", "4", "--seed", "8").stdout != r.stdout


def test_validate_accepts_inside_and_rejects_outside(tmp_path: Path) -> None:
    space = SearchSpace.load("tiny")
    arch = space.sample(np.random.default_rng(0))
    good = tmp_path / "good.json"
    good.write_text(arch.to_json(indent=2))
    r = recnas("validate", "tiny", str(good))
    assert r.returncode == 0 and arch.key() in r.stdout, r.stderr

    d = arch.to_dict()
    d["blocks"][1]["dense_dim"] = 100
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    r = recnas("validate", "tiny", str(bad))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"recnas space: error: {bad}: blocks[1].dense_dim: 100 not in [8, 16] (space 'tiny')"
    ]

    broken = tmp_path / "broken.json"
    broken.write_text("{")
    r = recnas("validate", "tiny", str(broken))
    assert r.returncode == 2 and "broken.json" in r.stderr and "not valid JSON" in r.stderr
    r = recnas("validate", "tiny", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "missing.json" in r.stderr


def test_preset_prints_a_spec_or_says_why_not() -> None:
    r = recnas("preset", "nasrec_small", "dlrm")
    assert r.returncode == 0, r.stderr
    arch = ArchSpec.from_json(r.stdout)
    assert SearchSpace.load("nasrec_small").contains(arch)
    r = recnas("preset", "nasrec_small", "dcnv2")
    assert r.returncode == 2 and "needs the dense op(s) ['sum', 'cross']" in r.stderr


def test_unknown_space_and_bad_space_file(tmp_path: Path) -> None:
    r = recnas("show", "nasrec_huge")
    assert r.returncode == 2 and "available spaces" in r.stderr and "nasrec_small" in r.stderr
    p = tmp_path / "typo.yaml"
    p.write_text("name: typo\nnum_blocks: 2\nembedding_dims: [8]\ndense_ops: [fc, mlp]\nsparse_ops: [efc]\n"
                 "dense_dims: [8]\nsparse_dims: [4]\nmax_connections: 1\ndense_sparse_interact: [false]\n"
                 "deep_fm: [false]\n")
    r = recnas("show", str(p))
    assert r.returncode == 2 and "typo.yaml" in r.stderr and "unknown op 'mlp'" in r.stderr
