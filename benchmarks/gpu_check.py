"""Helpers of ``benchmarks/gpu_check.sh`` (not a benchmark of its own).

    python benchmarks/gpu_check.py preflight --device cuda        # versions + one sharded step
    python3 benchmarks/gpu_check.py summary --work DIR --out DIR   # summary.json / summary.md

``preflight`` needs the recnas environment: it prints the versions of torch, CUDA, NCCL, FBGEMM and
TorchRec, checks that ``RECNAS_DEVICE`` resolves to the device asked for, and trains one step of a
2-table ``EmbeddingBagCollection`` through recnas's own ``shard`` (TorchRec's planner on that
compute device, the fused FBGEMM RowWiseAdagrad) and checks that the tables' weights moved.

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
    s = sub.add_parser("summary")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--device", default="cuda")
    s.add_argument("--mode", default="gpu")
    s.add_argument("--budget", type=int, default=480)
    a = ap.parse_args()
    if a.cmd == "preflight":
        return preflight(a.device)
    return summary(a.work, a.out, a.device, a.mode, a.budget)


if __name__ == "__main__":
    raise SystemExit(main())
