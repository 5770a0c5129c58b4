"""Helpers of ``benchmarks/gpu_check.sh`` (not a benchmark of its own).

    python benchmarks/gpu_check.py preflight --device cuda        # versions + one sharded step
    python benchmarks/gpu_check.py pilot-data --pipeline P [--set k=v ...]   # prepare P's data (cached)
    python benchmarks/gpu_check.py pilot --pipeline P --out DIR --json F [--set k=v ...]
    python3 benchmarks/gpu_check.py summary --work DIR --out DIR   # summary.json / summary.md

``preflight`` needs the recnas environment: it prints the versions of torch, CUDA, NCCL, FBGEMM and
TorchRec, checks that ``RECNAS_DEVICE`` resolves to the device asked for, and trains one step of a
2-table ``EmbeddingBagCollection`` through recnas's own ``shard`` (TorchRec's planner on that
compute device, the fused FBGEMM RowWiseAdagrad) and checks that the tables' weights moved.

``pilot-data`` prepares a bench pipeline's data (``recnas.pipeline.resolve_data``: synthesised and
cached in ``data.cache``); the script starts it in the background early, so that the GPU tier's
10M rows are ready when the pilot step starts. ``pilot`` is that step (``pipelines/bench_gpu.yaml``):
it waits for the data (``--data-rc``: the exit code file the background job writes), runs ``recnas
bench build`` until ``GPU_CHECK_STEP_LIMIT`` (the step's limit, set by the script) less a reserve,
then stops it (every finished row is durable; the run in progress is lost), runs ``recnas bench
ceiling`` on the rows built, and copies ``build.json``, ``groundtruth.csv`` and the ceiling's
markdown into ``--out`` (a folder ``recnas bench build --import`` reads), with its figures in
``--json``. It fails only if the data or the build failed, not when the time ran out.

``summary`` uses the standard library alone (it must run when the setup failed): it reads the
step table the shell script wrote (``steps.tsv``), the runs' own files (``supernet.json``, the
trial store ``journal.jsonl``, ``final/*/history.json``) and ``bench_train.py --json``'s file, and
writes ``summary.json`` and ``summary.md`` with every throughput as a ratio to TorchRec's DLRM
measured on the same device in the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path


def preflight(device: str) -> int:
    t0 = time.perf_counter()
    try:
        import torch
    except ImportError as e:
        print(f"gpu_check preflight: torch does not import in {sys.executable}: {e}", file=sys.stderr)
        return 1
    info: dict = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                  "cuda_available": torch.cuda.is_available()}
    try:
        import fbgemm_gpu
        import torchrec

        info["fbgemm_gpu"] = getattr(fbgemm_gpu, "__version__", "?")
        info["torchrec"] = getattr(torchrec, "__version__", "?")
    except Exception as e:  # noqa: BLE001 - reported, then the check stops
        print(json.dumps(info))
        print(f"gpu_check preflight: TorchRec/FBGEMM do not import: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["gpus"] = torch.cuda.device_count()
        try:
            info["nccl"] = ".".join(str(x) for x in torch.cuda.nccl.version())
        except Exception as e:  # noqa: BLE001
            info["nccl"] = f"unknown ({type(e).__name__})"
    from recnas.device import resolve_device

    got = resolve_device()
    info["recnas_device"] = got
    if got != device:
        print(json.dumps(info))
        print(f"gpu_check preflight: RECNAS_DEVICE resolves to {got!r}, not {device!r}", file=sys.stderr)
        return 1

    from torchrec.modules.embedding_configs import EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    from recnas.train.distributed import init_distributed, make_optimizer, shard, shutdown_distributed

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            tables = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=8, num_embeddings=100,
                                         feature_names=[f"f{i}"]) for i in range(2)]
            self.ebc = EmbeddingBagCollection(tables=tables, device=torch.device("meta"))

        def forward(self, kjt: KeyedJaggedTensor) -> torch.Tensor:
            return self.ebc(kjt).values().sum(dim=1)

    env = init_distributed()
    try:
        info["backend"], info["env_device"] = env.backend, str(env.device)
        torch.manual_seed(0)
        dmp = shard(Tiny(), env)
        opt = make_optimizer(dmp, dense_lr=0.1)
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=["f0", "f1"], values=torch.arange(8) % 100, lengths=torch.ones(8, dtype=torch.int64),
        ).to(env.device)
        before = {k: v.local_shards()[0].tensor.detach().clone() if hasattr(v, "local_shards") else v.detach().clone()
                  for k, v in dmp.state_dict().items()}
        opt.zero_grad()
        y = dmp(kjt)
        y.float().pow(2).mean().backward()
        opt.step()
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        after = {k: v.local_shards()[0].tensor if hasattr(v, "local_shards") else v for k, v in dmp.state_dict().items()}
        devices = sorted({str(t.device) for t in after.values()})
        moved = [k for k in before if not torch.equal(before[k], after[k].detach())]
        info["table_devices"], info["tables_updated"] = devices, len(moved)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        print(json.dumps(info))
        if not moved or any(not d.startswith(env.device.type) for d in devices):
            print(f"gpu_check preflight: the sharded tables on {devices} were not updated as expected "
                  f"({len(moved)} of {len(before)} changed)", file=sys.stderr)
            return 1
    finally:
        shutdown_distributed()
    return 0


# -- the GPU tier's pilot ---------------------------------------------------------------------------


def pilot_data(pipeline: str, sets: list[str]) -> int:
    """Prepares (or finds cached) the data of ``pipeline`` with ``--set`` overrides ``sets``."""
    from recnas.bench.config import load_bench
    from recnas.pipeline import resolve_data

    t0 = time.perf_counter()
    path = resolve_data(load_bench(pipeline, sets).data, progress=False)
    print(f"gpu_check pilot-data: {path} ready in {time.perf_counter() - t0:.0f} s")
    return 0


def _stop(proc: "subprocess.Popen[bytes]", grace: float = 15.0) -> None:
    """SIGTERM to the build's process group (the build and its workers), SIGKILL after ``grace`` s."""
    import os
    import signal
    import subprocess

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def pilot(pipeline: str, sets: list[str], out: Path, json_path: Path, data_rc: Path | None, import_dir: str | None,
          archs: int, max_seeds: int, reserve: float) -> int:
    """The ``bench_gpu_pilot`` step (module docstring); writes ``json_path`` whatever happens."""
    import os
    import shutil
    import subprocess

    t0 = time.time()
    limit = float(os.environ.get("GPU_CHECK_STEP_LIMIT", "300"))
    deadline = t0 + limit - reserve
    fig: dict = {"pipeline": pipeline, "overrides": sets, "limit_s": limit, "imported_from": import_dir}

    def done(rc: int, note: str) -> int:
        fig["note"], fig["seconds"] = note, round(time.time() - t0, 1)
        json_path.write_text(json.dumps(fig, indent=2) + "\n")
        print(f"gpu_check pilot: {note}")
        return rc

    if data_rc is not None:
        while not data_rc.exists() and time.time() < deadline:
            time.sleep(2)
        fig["data_wait_s"] = round(time.time() - t0, 1)
        if not data_rc.exists():
            return done(0, f"the data was not ready within {limit:.0f} s; no run started")
        rc = data_rc.read_text().strip()
        if rc != "0":
            log = data_rc.with_suffix(".log")
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            return done(1, f"preparing the data failed (exit {rc}): {' '.join(tail)[:300]}")
    if deadline - time.time() < 20:
        return done(0, f"no time left for a run after {fig.get('data_wait_s', 0):.0f} s waiting for the data")
    from recnas.bench.config import load_bench
    from recnas.bench.groundtruth import BUILD_FILE, read_table

    cfg = load_bench(pipeline, sets)
    over = [a for s in sets for a in ("--set", s)]
    cmd = [sys.executable, "-m", "recnas", "bench", "build", pipeline, *over]
    if import_dir:
        cmd += ["--import", import_dir]
    print("$ " + " ".join(cmd), flush=True)
    t_build = time.time()
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        build_rc = proc.wait(max(1.0, deadline - time.time()))
        cut = False
    except subprocess.TimeoutExpired:
        _stop(proc)
        build_rc, cut = proc.returncode, True
    fig["build_s"], fig["cut_at_limit"], fig["build_rc"] = round(time.time() - t_build, 1), cut, build_rc
    table = read_table(cfg.output)
    fig["rows"] = len(table)
    if len(table):
        per_arch = table.groupby("arch")["seed"].nunique()
        fig["archs_all_seeds"] = int((per_arch == len(cfg.train.seeds)).sum())
        fig["seeds"] = list(cfg.train.seeds)
        fig["devices"] = sorted(str(d) for d in table["device"].dropna().unique()) if "device" in table else []
        fig["train_seconds_median"] = float(table["train_seconds"].median())
        fig["samples_per_s_median"] = float(table["samples_per_s"].median())
        fig["test_logloss_range"] = [float(table["test_logloss"].min()), float(table["test_logloss"].max())]
    ceiling_cmd = [sys.executable, "-m", "recnas", "bench", "ceiling", pipeline, *over, "--archs", str(archs),
                   "--max-seeds", str(max_seeds)]
    print("$ " + " ".join(ceiling_cmd), flush=True)
    try:
        c = subprocess.run(ceiling_cmd, capture_output=True, text=True, timeout=max(10.0, t0 + limit - 5 - time.time()))
        print(c.stdout + c.stderr, flush=True)
        fig["ceiling_rc"] = c.returncode
        if c.returncode != 0:
            fig["ceiling_note"] = (c.stderr.strip().splitlines() or ["?"])[-1][:300]
    except subprocess.TimeoutExpired:
        fig["ceiling_rc"], fig["ceiling_note"] = None, "timed out"
    proj = Path(cfg.output) / "ceiling_projection.csv"
    if fig.get("ceiling_rc") == 0 and proj.exists():
        import pandas as pd

        from recnas.bench.ceiling import complete_truth, variance_components

        y, _, _ = complete_truth(table)
        vc = variance_components(y)
        fig["sigma_arch"], fig["sigma_seed"] = vc.sigma_arch, vc.sigma_seed
        p = pd.read_csv(proj)
        fig["projected_kendall"] = {int(r.seeds_per_truth): round(float(r.kendall), 3) for r in p.itertuples()}
    out.mkdir(parents=True, exist_ok=True)
    src = Path(cfg.output)
    if (src / BUILD_FILE).exists():
        shutil.copy(src / BUILD_FILE, out / BUILD_FILE)
    if len(table):
        table.to_csv(out / "groundtruth.csv", index=False)
    if (src / "ceiling_projection.md").exists() and fig.get("ceiling_rc") == 0:
        shutil.copy(src / "ceiling_projection.md", out / "ceiling_projection.md")
    if not cut and build_rc != 0:
        return done(1, f"recnas bench build failed (exit {build_rc}) after {fig['rows']} rows")
    return done(0, f"{fig['rows']} rows ({fig.get('archs_all_seeds', 0)} architectures with all seeds) in "
                   f"{fig['build_s']:.0f} s" + ("; stopped at the step's limit" if cut else "; the build finished"))


# -- summary ---------------------------------------------------------------------------------------

WARMUP_LINE = re.compile(r"warm-up done: (\d+) steps, ([\d,.]+) samples/s")


def _read_json(p: Path) -> dict | list | None:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def pipeline_figures(run: Path, log: Path) -> dict:
    """Throughputs of one ``recnas demo`` run: warm-up, SiGeo scoring, production training of the
    searched model and of TorchRec's DLRM (the same data, batch size and device)."""
    out: dict = {}
    text = log.read_text(errors="replace") if log.exists() else ""
    m = WARMUP_LINE.search(text)
    if m:
        out["warmup_steps"] = int(m.group(1))
        out["warmup_samples_per_s"] = float(m.group(2).replace(",", ""))
    journal = run / "journal.jsonl"
    if journal.exists():
        secs = []
        for line in journal.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("type") == "trial" and r.get("study") == "search" and r.get("score") is not None \
                    and not r.get("cached") and r.get("seconds"):
                secs.append(float(r["seconds"]))
        if secs:
            out["candidates_scored"] = len(secs)
            out["scoring_seconds_per_candidate"] = sum(secs) / len(secs)
    final = run / "final"
    rates = {}
    for hist in sorted(final.glob("*/history.json")) if final.is_dir() else []:
        h = _read_json(hist)
        eps = [e for e in (h or {}).get("epochs", []) if isinstance(e.get("samples_per_s"), (int, float))]
        if eps and eps[-1]["samples_per_s"] == eps[-1]["samples_per_s"]:  # not NaN
            rates[hist.parent.name] = eps[-1]["samples_per_s"]
    dlrm = rates.get("baseline-dlrm")
    searched = {k: v for k, v in rates.items() if not k.startswith("baseline-")}
    if dlrm:
        out["prod_dlrm_samples_per_s"] = dlrm
    if searched:
        name, rate = sorted(searched.items())[0]
        out["prod_searched"] = name
        out["prod_searched_samples_per_s"] = rate
        if dlrm:
            out["prod_searched_vs_dlrm"] = rate / dlrm
    if dlrm and "warmup_samples_per_s" in out:
        out["warmup_vs_prod_dlrm"] = out["warmup_samples_per_s"] / dlrm
    return out


def summary(work: Path, out: Path, device: str, mode: str, budget: int) -> int:
    steps = []
    tsv = work / "steps.tsv"
    if tsv.exists():
        for line in tsv.read_text().splitlines():
            name, status, seconds, note = (line.split("\t") + ["", "", "", ""])[:4]
            steps.append({"step": name, "status": status, "seconds": int(seconds or 0), "note": note})
    figures: dict = {}
    for name in ("pipeline_1proc", "pipeline_2proc"):
        run = work / name
        if run.is_dir():
            figures[name] = pipeline_figures(run, out / "logs" / f"{name}.log")
    pilot_fig = _read_json(work / "bench_gpu_pilot.json")
    if isinstance(pilot_fig, dict):
        figures["bench_gpu_pilot"] = pilot_fig
    bench = _read_json(work / "bench_train.json")
    if isinstance(bench, dict):
        figures["bench_train"] = {
            "ratios": bench.get("ratios", {}),
            "samples_per_s": {k: v.get("samples_per_s") for k, v in bench.get("models", {}).items()},
            "peak_gpu_mb": {k: v.get("peak_gpu_mb") for k, v in bench.get("models", {}).items() if "peak_gpu_mb" in v},
            "settings": bench.get("settings", {}),
        }
    pre = None
    plog = out / "logs" / "preflight.log"
    if plog.exists():
        for line in plog.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    pre = json.loads(line)
                except ValueError:
                    pass
    failed = [s["step"] for s in steps if s["status"] in ("fail", "timeout")]
    result = {
        "mode": mode, "device": device, "budget_s": budget, "environment": pre, "steps": steps,
        "figures": figures, "ok": not failed and bool(steps), "failed": failed,
        "total_seconds": sum(s["seconds"] for s in steps),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    md = _markdown(result)
    (out / "summary.md").write_text(md)
    print(md)
    return 0


def _f(x: float | None, fmt: str = ",.0f") -> str:
    return "-" if x is None else format(x, fmt)


def _markdown(r: dict) -> str:
    env = r.get("environment") or {}
    where = env.get("gpu") or r["device"]
    lines = [f"# gpu_check summary ({r['mode']}, device {r['device']}: {where})", ""]
    if env:
        lines.append("torch {torch} (CUDA {torch_cuda}), fbgemm_gpu {fbgemm_gpu}, torchrec {torchrec}, NCCL {nccl}, "
                     "backend {backend}".format(**{k: env.get(k, "-") for k in
                                                   ("torch", "torch_cuda", "fbgemm_gpu", "torchrec", "nccl", "backend")}))
        lines.append("")
    lines += ["| step | status | seconds | note |", "|---|---|---:|---|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['note']} |" for s in r["steps"]]
    lines += ["", f"total {r['total_seconds']} s of a {r['budget_s']} s budget; "
              + ("every step that ran passed" if r["ok"] else f"FAILED: {', '.join(r['failed']) or 'no step ran'}"), ""]
    b = r["figures"].get("bench_train")
    if b:
        s, q = b["samples_per_s"], b["ratios"]
        lines += ["Throughput, `benchmarks/bench_train.py` (world size 1, same device, same run), samples/s and "
                  "ratio to TorchRec DLRM:", "",
                  "| model | samples/s | vs DLRM |", "|---|---:|---:|",
                  f"| TorchRec DLRM | {_f(s.get('dlrm'))} | 1.00 |",
                  f"| TorchRec DLRM, warm-up's FLOPs | {_f(s.get('dlrm_flops'))} | "
                  f"{_f(s['dlrm_flops'] / s['dlrm'] if s.get('dlrm') and s.get('dlrm_flops') else None, '.2f')} |",
                  f"| supernet warm-up | {_f(s.get('warmup'))} | {_f(q.get('warmup_vs_dlrm'), '.2f')} "
                  f"({_f(q.get('warmup_vs_dlrm_flops'), '.2f')} of the FLOP-matched DLRM) |",
                  f"| standalone CTRModel | {_f(s.get('standalone'))} | {_f(q.get('standalone_vs_dlrm'), '.2f')} |",
                  "", f"settings: {json.dumps(b['settings'])}", ""]
    g = r["figures"].get("bench_gpu_pilot")
    if g:
        kt = g.get("projected_kendall") or {}
        lines += [f"GPU-tier pilot (`{g['pipeline']}`, {' '.join(g.get('overrides', []))}): {g.get('note', '-')}; "
                  f"devices {', '.join(g.get('devices', [])) or '-'}; median {_f(g.get('train_seconds_median'), '.1f')} s "
                  f"and {_f(g.get('samples_per_s_median'))} samples/s a run; sigma_arch/sigma_seed "
                  f"{_f(g.get('sigma_arch'), '.5f')}/{_f(g.get('sigma_seed'), '.5f')}; projected Kendall by seeds per "
                  f"truth {json.dumps(kt) if kt else '- (' + str(g.get('ceiling_note', 'no ceiling')) + ')'}; "
                  "rows in bench_gpu_pilot/", ""]
    for name in ("pipeline_1proc", "pipeline_2proc"):
        p = r["figures"].get(name)
        if not p:
            continue
        lines += [f"`recnas demo` {name}: warm-up {_f(p.get('warmup_samples_per_s'))} samples/s "
                  f"({_f(p.get('warmup_vs_prod_dlrm'), '.2f')}x the DLRM production training below); SiGeo "
                  f"{_f(p.get('scoring_seconds_per_candidate'), '.3f')} s per candidate over "
                  f"{p.get('candidates_scored', 0)}; production training {_f(p.get('prod_searched_samples_per_s'))} "
                  f"samples/s for the searched model, {_f(p.get('prod_dlrm_samples_per_s'))} for TorchRec DLRM "
                  f"({_f(p.get('prod_searched_vs_dlrm'), '.2f')}x)", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("preflight")
    p.add_argument("--device", choices=("cpu", "cuda"), required=True)
    d = sub.add_parser("pilot-data")
    d.add_argument("--pipeline", required=True)
    d.add_argument("--set", dest="sets", action="append", default=[])
    q = sub.add_parser("pilot")
    q.add_argument("--pipeline", required=True)
    q.add_argument("--set", dest="sets", action="append", default=[])
    q.add_argument("--out", type=Path, required=True, help="where build.json, groundtruth.csv and the ceiling go")
    q.add_argument("--json", type=Path, required=True, help="the step's figures, for the summary")
    q.add_argument("--data-rc", type=Path, help="exit code file of the background pilot-data job (wait for it)")
    q.add_argument("--import", dest="import_dir", help="rows of an earlier slice of the pilot (build --import)")
    q.add_argument("--archs", type=int, default=200, help="architectures the ceiling is projected to")
    q.add_argument("--max-seeds", type=int, default=4)
    q.add_argument("--reserve", type=float, default=40.0, help="seconds of the step kept for the ceiling and copies")
    s = sub.add_parser("summary")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--mode", default="gpu")
    s.add_argument("--budget", type=int, default=480)
    a = ap.parse_args()
    if a.cmd == "preflight":
        return preflight(a.device)
    if a.cmd == "pilot-data":
        return pilot_data(a.pipeline, a.sets)
    if a.cmd == "pilot":
        return pilot(a.pipeline, a.sets, a.out, a.json, a.data_rc, a.import_dir, a.archs, a.max_seeds, a.reserve)
    return summary(a.work, a.out, a.device, a.mode, a.budget)


if __name__ == "__main__":
    raise SystemExit(main())
