"""Scoring time of a search that warms its supernet up (fresh) vs one that finds it on disk (resumed).

Issue 17, item 2: a search that found its warmed supernet on disk (a resume, or a rerun into the
same folder) scored its candidates 7-100x slower than the run that had warmed it, on a busy 2-core
machine. The cause is OpenMP's wait policy: with ``OMP_WAIT_POLICY`` unset, libgomp (torch's
OpenMP) makes waiting threads spin 300,000 times at each barrier before sleeping, or 100 times
when the process runs more OpenMP threads than the machine has CPUs. A fresh search's warm-up
leaves a second OpenMP team alive, so its scoring got the short spin by accident; a resumed one
spun in full, and on cores shared with other processes a spinning thread waits out the time slice
of a descheduled one at every small op. ``recnas`` now sets ``OMP_WAIT_POLICY=PASSIVE`` (unless
the environment sets it or ``GOMP_SPINCOUNT``) before torch is loaded (``recnas.cli``), and
``recnas search --threads N`` sets torch's threads.

For each setting this runs, as real ``recnas search`` subprocesses of ``pipelines/demo.yaml`` cut to
``--budget`` candidates (no export, no final training; its prepared data is reused from
``data/cache``):

- ``fresh``: into an empty folder (warm-up, then scoring);
- ``resumed``: into a folder holding only that run's finished warm-up (``supernet.json`` and
  ``supernet/``), which is what a rerun or a resume after the warm-up finds: same candidates, same
  weights, no warm-up;

and reports the scoring time of each (the sum of the journal's per-candidate ``seconds``), their
ratio resumed / fresh, and the largest score difference between the two (0 or float rounding).
Settings:

- ``spin``: ``GOMP_SPINCOUNT=300000``, libgomp's own default, i.e. recnas before the fix;
- ``passive``: the environment without OpenMP settings, i.e. recnas's default now (PASSIVE);
- ``threads1``: recnas's default plus ``--threads 1``.

    .venv/bin/python benchmarks/bench_search_resume.py [--budget 48] [--settings spin,passive,threads1]

Measured on 2 CPU cores shared with other sessions' training and test runs (torch 2.13.0+cpu and
its libgomp; SiGeo on 4 x 256 rows; the scores of fresh and resumed runs identical in every row;
more in ``reports/search_resume/README.md``)::

    $ .venv/bin/python benchmarks/bench_search_resume.py
    2 CPUs, load average 2.95 at the start; demo pipeline, budget 48
         spin: 48 candidates scored in 5.81 s fresh, 118.72 s resumed: ratio 20.45 (max score diff 0; load 2.95-5.95)
      passive: 48 candidates scored in 8.90 s fresh, 6.88 s resumed: ratio 0.77 (max score diff 0; load 5.95-5.14)
     threads1: 48 candidates scored in 5.82 s fresh, 5.76 s resumed: ratio 0.99 (max score diff 0; load 5.14-4.77)

About 5 minutes at budget 48 on a busy 2-core machine (most of it the ``spin`` resumed run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINE = REPO / "pipelines" / "demo.yaml"
OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "KMP_BLOCKTIME")
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "spin": ({"GOMP_SPINCOUNT": "300000"}, []),
    "passive": ({}, []),
    "threads1": ({}, ["--threads", "1"]),
}


def _search(out: Path, budget: int, env_extra: dict[str, str], args: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(env_extra)
    cmd = [sys.executable, "-m", "recnas", "search", str(PIPELINE), "--no-progress", *args,
           "--set", f"search.budget={budget}", "--set", f"output={out}",
           "--set", "export.top=0", "--set", "final.top=0", "--set", "retrain.top=0"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    trials = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    trials = {t["key"]: t for t in trials if t.get("seconds") is not None and "score" in t}
    return {"scoring_s": sum(t["seconds"] for t in trials.values()), "wall_s": wall, "trials": trials,
            "load": (load0, os.getloadavg()[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=48, help="candidates per search (default 48)")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    names = [s for s in args.settings.split(",") if s]
    unknown = [s for s in names if s not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown settings {unknown}; choose from {list(SETTINGS)}")

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start; "
          f"demo pipeline, budget {args.budget}", flush=True)
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_resume-"))
    try:
        for name in names:
            env_extra, extra_args = SETTINGS[name]
            fresh_dir, resumed_dir = tmp / name / "fresh", tmp / name / "resumed"
            fresh = _search(fresh_dir, args.budget, env_extra, extra_args)
            resumed_dir.mkdir(parents=True)
            shutil.copytree(fresh_dir / "supernet", resumed_dir / "supernet")
            shutil.copy2(fresh_dir / "supernet.json", resumed_dir / "supernet.json")
            resumed = _search(resumed_dir, args.budget, env_extra, extra_args)
            if set(fresh["trials"]) != set(resumed["trials"]):
                raise SystemExit(f"{name}: the resumed search scored other candidates than the fresh one")
            diff = max(abs(fresh["trials"][k]["score"] - resumed["trials"][k]["score"]) for k in fresh["trials"])
            row = {
                "setting": name, "candidates": len(fresh["trials"]),
                "fresh_s": round(fresh["scoring_s"], 2), "resumed_s": round(resumed["scoring_s"], 2),
                "ratio": round(resumed["scoring_s"] / fresh["scoring_s"], 2),
                "max_score_diff": diff,
                "load": [round(x, 2) for x in (*fresh["load"], *resumed["load"])],
            }
            rows.append(row)
            print(f"{name:>9}: {row['candidates']} candidates scored in {row['fresh_s']:.2f} s fresh, "
                  f"{row['resumed_s']:.2f} s resumed: ratio {row['ratio']:.2f} "
                  f"(max score diff {diff:.2g}; load {row['load'][0]:.2f}-{row['load'][-1]:.2f})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "budget": args.budget, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
