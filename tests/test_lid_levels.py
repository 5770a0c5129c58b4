"""The supernet split at 2 and 3 levels (each level splits every sub-supernet, children start from
their parent, the compute adds up), the fine-tuning that continues the parent's Adagrad state, and
a split run killed at each stage that resumes through its journal and the score store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchkit import tiny_bench_pipeline
from lidkit import batches as _batches, small_fm
from recnas.lid.split import (JOURNAL_FILE, Region, SplitConfig, _cycle, _KINDS, finetune,
                              restricted_copy, split_supernet)
from recnas.models import Supernet
from recnas.space import SearchSpace

REPO = Path(__file__).resolve().parents[1]


def batches(fm, n: int, seed: int = 0) -> list:
    return _batches(fm, n, size=48, seed=seed)


@pytest.fixture(scope="module")
def root():
    fm = small_fm()
    torch.manual_seed(0)
    return Supernet(fm, SearchSpace.load("tiny")).eval(), fm


def _choice(name: str) -> tuple[int, str]:
    return int(name.split("[")[1].split("]")[0]), name.split(".")[1]


def expected_passes(space: SearchSpace, splits: list[dict], n_batches: int) -> int:
    """Forward passes the measurement must take, rebuilt from the splits alone: at every level each
    sub-supernet measures every op of every choice it still has two or more ops on, per batch."""
    regions = {Region().describe(): Region()}
    total = 0
    for s in splits:
        r = regions.pop(s["parent"])
        total += n_batches * sum(len(r.ops(space, (b, k))) for b in range(space.num_blocks) for k in _KINDS
                                 if len(r.ops(space, (b, k))) >= 2)
        for g in s["groups"]:
            child = r.restrict(_choice(s["choice"]), g)
            regions[child.describe()] = child
    return total


def test_three_levels_split_every_sub_supernet_once_per_level_and_the_compute_adds_up(root):
    net, fm = root
    cfg = SplitConfig(method="lid", levels=3, batches=2, k=10)
    split = split_supernet(net, batches(fm, 2), cfg, finetune_batches=batches(fm, 3, seed=10), finetune_steps=13,
                           lr=0.05)
    rec = split.record
    assert [s["level"] for s in rec.splits] == [1, 2, 2, 3, 3, 3, 3]
    # each level's parents are exactly the regions the level before made
    made = {1: {Region().describe(): Region()}}
    for s in rec.splits:
        parent = made[s["level"]].pop(s["parent"])
        assert s["choice"] == min(s["scores"], key=s["scores"].get)
        assert sorted(s["groups"][0] + s["groups"][1]) == sorted(parent.ops(net.space, _choice(s["choice"])))
        for g in s["groups"]:
            r = parent.restrict(_choice(s["choice"]), g)
            made.setdefault(s["level"] + 1, {})[r.describe()] = r
    assert all(not v for k, v in made.items() if k <= 3)  # every sub-supernet of levels 1-3 was split
    assert sorted(made[4]) == sorted(r.describe() for r in split.regions)
    assert len(split.subnets) == 8 and len(set(r.describe() for r in split.regions)) == 8
    space = split.space
    for seed in range(40):
        assert sum(r.contains(space.sample(np.random.default_rng(seed))) for r in split.regions) == 1
    # compute: every fine-tuning step given out, every measured pass counted
    assert rec.finetune_steps == 13
    assert rec.forward_passes == expected_passes(space, rec.splits, 2) and rec.backward_passes == 0
    assert all(s.sparse_arch is net.sparse_arch for s in split.subnets)


def test_children_start_from_their_fine_tuned_parent_and_continue_its_adagrad_state(root, tmp_path):
    net, fm = root
    # parent state: the root fine-tuned a little, its Adagrad state kept
    parent = restricted_copy(net, Region())
    _, parent_state = finetune(parent, Region(), parent.space, _cycle(batches(fm, 2, seed=20)), 3, lr=0.05,
                               eps=1e-2, seed=1)
    cfg = SplitConfig(method="lid", levels=2, batches=2, k=10, checkpoint_every=0)
    # 2 steps: level 1 gives 1 to its first child, level 2 gives 1 to its first child, so the other
    # level-2 children are their level-1 parent as fine-tuned, untouched
    split = split_supernet(parent, batches(fm, 2), cfg, finetune_batches=batches(fm, 3, seed=10), finetune_steps=2,
                           lr=0.05, parent_opt_state=parent_state, workdir=tmp_path / "work")
    l1 = torch.load(tmp_path / "work" / "L1_0.pt", weights_only=False)
    second = dict(split.subnets[1].dense_arch.named_parameters())
    for n, w in l1["dense"].items():
        if n in second:
            assert torch.equal(second[n], w)
    p0 = dict(parent.dense_arch.named_parameters())
    assert not torch.equal(l1["dense"]["head.weight"], p0["head.weight"])  # fine-tuned away from the root
    # the level-1 child's Adagrad went on from the parent's: one more step on every trained weight
    assert l1["optim"]["head.weight"]["step"] == parent_state["head.weight"]["step"] + 1
    assert torch.all(l1["optim"]["head.weight"]["sum"] >= parent_state["head.weight"]["sum"])

    # one step from the same weights on the same batch: the continued accumulators damp the update
    a, b = restricted_copy(parent, Region()), restricted_copy(parent, Region())
    fb = batches(fm, 1, seed=30)
    finetune(a, Region(), a.space, _cycle(fb), 1, lr=0.05, eps=1e-2, seed=2, opt_state=parent_state)
    finetune(b, Region(), b.space, _cycle(fb), 1, lr=0.05, eps=1e-2, seed=2, opt_state=None)
    da = (a.dense_arch.head.weight - p0["head.weight"]).abs()
    db = (b.dense_arch.head.weight - p0["head.weight"]).abs()
    assert torch.all(da <= db + 1e-7) and da.sum() < db.sum()


def _cli(pipe: Path, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RECNAS_FAULT", None)
    if fault:
        env["RECNAS_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "recnas", "bench", "compare", str(pipe), "--no-progress",
                           "--score-only"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _forked(pipe: Path, fault: str | None) -> int:
    """``recnas bench compare PIPE`` through the CLI's ``main`` in a forked child (this process's
    imports, so no start-up cost), with ``RECNAS_FAULT=fault``; the child's exit code (-9: killed)."""
    import multiprocessing as mp

    def child() -> None:
        from recnas.cli import main

        os.environ.pop("RECNAS_FAULT", None)
        if fault:
            os.environ["RECNAS_FAULT"] = fault
        os._exit(main(["bench", "compare", str(pipe), "--no-progress", "--score-only"]) or 0)

    p = mp.get_context("fork").Process(target=child)
    p.start()
    p.join(600)
    return p.exitcode


def _journal(out: Path) -> list[dict]:
    path = next(out.glob("warmup/split_*/frac_*/work")) / JOURNAL_FILE
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_a_split_run_killed_at_each_stage_resumes_with_nothing_recomputed(tmp_path: Path) -> None:
    """``recnas bench compare --score-only`` with a two-level split, killed right after a choice is
    measured, after a split is journalled, mid-way through a sub-supernet's fine-tuning, after one
    is fine-tuned and while the split is scored; each rerun goes on from the journal and the score
    store, and the last gives the uninterrupted run's split and scores with every unit of work done once."""
    from recnas.bench.compare import run_compare
    from recnas.bench.config import load_bench

    split = {"method": "lid", "levels": 2, "batches": 2, "batch_size": 32, "k": 10, "finetune_fraction": 0.5,
             "checkpoint_every": 1}
    pipe = tiny_bench_pipeline(tmp_path, "ref", tmp_path / "cache", num_archs=4, split=split,
                               warmup={"fractions": [0.5], "batch_size": 16}, estimators=[{"name": "oneshot"}],
                               sigeo_ablation={"embeddings": [], "inits": []})
    cfg = load_bench(pipe)
    ref, kill = Path(cfg.output), tmp_path / "kill"
    run_compare(cfg, progress=False, score_only=True)
    ref_journal = _journal(ref)
    ref_records = (ref / "scores" / "trials.jsonl").read_text().splitlines()

    d = pipe.read_text().replace(str(ref), str(kill))
    (tmp_path / "kill.yaml").write_text(d)
    kpipe = tmp_path / "kill.yaml"
    facts = json.loads(next(ref.glob("warmup/split_*/frac_*/split.json")).read_text())["facts"]
    assert facts["finetune_optimizer"] == "continue" and facts["measure_step_equivalents"] > 0
    assert facts["parent_steps"] + facts["finetune_steps"] == facts["single_steps"]

    # killed while measuring level 1 (a CLI subprocess), then in forked children of this process:
    # right after level 1's split, mid-way through its first child's fine-tuning, after that child's
    # fine-tuning, after a level-2 child's fine-tuning (the second finished in that run), while scoring
    r = _cli(kpipe, "split.measure:3")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert len([x for x in _journal(kill) if x["kind"] == "choice"]) == 3
    for fault in ("split.partition:1", "split.checkpoint:1", "split.finetuned:1", "split.finetuned:2",
                  "bench.score:2"):
        assert _forked(kpipe, fault) == -signal.SIGKILL, fault
    assert _forked(kpipe, None) == 0

    def split_of(out: Path) -> dict:
        return torch.load(next(out.glob("warmup/split_*/frac_*/dense.pt")), weights_only=True)

    a, b = split_of(ref), split_of(kill)
    assert a.keys() == b.keys() and all(torch.equal(a[i][n], b[i][n]) for i in a for n in a[i])
    got = _journal(kill)
    kinds = lambda j, k: [x for x in j if x["kind"] == k]  # noqa: E731
    # every choice measured once, every split journalled once, every fine-tuning step run once
    for k, key in (("choice", ("level", "region", "choice")), ("split", ("level", "region")),
                   ("finetuned", ("level", "index"))):
        ids = [tuple(x[f] for f in key) for x in kinds(got, k)]
        assert len(ids) == len(set(ids)) == len(kinds(ref_journal, k)), k
    done = {}
    for x in kinds(got, "steps"):
        done.setdefault((x["level"], x["index"]), []).append((x["from"], x["to"]))
    assert sum(t - f for v in done.values() for f, t in v) == facts["finetune_steps"]
    assert any(len(v) > 1 for v in done.values())  # one fine-tuning was cut and went on from its checkpoint
    for v in done.values():
        assert all(v[i][1] == v[i + 1][0] for i in range(len(v) - 1))
    # the score store: the same scores, none computed twice
    def scores(lines: list[str]) -> list[tuple]:
        recs = [json.loads(x) for x in lines]
        return [(x["key"], x["measure"], x["settings"], json.dumps(x.get("values"))) for x in recs if "key" in x]

    got_s, want_s = scores((kill / "scores" / "trials.jsonl").read_text().splitlines()), scores(ref_records)
    assert len(got_s) == len(set(got_s)) and sorted(got_s) == sorted(want_s) and len(want_s) >= 2 * 4
    assert not list(kill.glob("warmup/split_*/frac_*/work/*.pt"))  # states dropped once the split is saved
