"""Recipe study: which training recipe trains recnas's models best, measured on the validation split.

    .venv/bin/python benchmarks/recipe_study.py PREPARED_DIR --recipe old:dense_eps=0.01 \\
        --recipe new:dense_eps=1e-8 [--recipe NAME:key=value,key=value ...] \\
        [--baselines dlrm deepfm dcnv2] [--space nasrec_small] [--archs 6] [--arch-seed 0] \\
        [--seeds 0 1] [--batch-size 512] [--epochs 1] [--fraction 1.0] [--threads 1] \
        [--specs SPECS.json] --out CSV

Every (architecture, recipe, seed) is trained from scratch by recnas's own trainer
(:func:`recnas.train.trainer.train`, exactly as ``recnas arch train`` / the bench's ground truth: the
model sharded by ``DistributedModelParallel``, row-wise Adagrad tables, Adagrad dense weights) and
scored on the **validation split only** (the test split is never read, so no recipe is chosen on
it). A recipe is a :class:`recnas.train.scratch.TrainRecipe` whose fields the ``--recipe`` items
override (``dense_lr``, ``table_lr``, ``dense_eps``, ``lr_schedule``, ``lr_warmup``, ...); the
batch size, epochs and fraction are the command line's for every recipe.

Architectures: the hand-designed baselines (``dlrm`` is TorchRec's DLRM, ``deepfm`` / ``dcnv2`` the
presets of ``--baseline-space``, ``deepfm_lib`` / ``dcn_lib`` the library presets) and ``--archs`` architectures sampled from ``--space`` with
``--arch-seed`` (the same ones for every recipe), then the architectures of ``--specs``: a JSON object
``{label: spec}`` whose specs are ``ArchSpec.to_dict()`` mappings (any structure ``CTRModel`` builds,
in a space or not, e.g. variants of a preset with ``norm: none`` blocks). A run whose loss is NaN / inf or above the
trainer's divergence guard (``MAX_LOSS``) counts as **diverged** (kept in the CSV, its validation
log loss recorded as NaN and excluded from the means).

``--ablate layernorm`` is a diagnostic: recnas's ops run with every LayerNorm replaced by the
identity (TorchRec's DLRM has none either way), to measure what NASRec's LayerNorm-after-linear does
to a model; the CSV of such a study must not be mixed with a normal one.

Output: one CSV row per run (rewritten after each run; a rerun with the same ``--out`` skips the
runs already in it, so a killed study resumes), and a table per recipe: mean validation log loss,
the mean paired difference to the first recipe over the (architecture, seed) pairs both finished
with its 95 % t interval (scipy), how many pairs it won, and how many runs diverged; written to
CSV's ``_summary.csv`` sibling.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

FIELDS = ("recipe", "arch", "kind", "seed", "status", "val_logloss", "val_auc", "steps", "train_seconds", "params", "settings")


def parse_recipe(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:key=value,key=value`` -> (NAME, {key: typed value}) checked against TrainRecipe's fields."""
    from recnas.train.scratch import TrainRecipe

    name, _, rest = text.partition(":")
    if not name:
        raise SystemExit(f"recipe_study: --recipe {text!r}: expected NAME:key=value,...")
    types = {f.name: f.type for f in fields(TrainRecipe)}
    out: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        k, eq, v = item.partition("=")
        if not eq or k not in types:
            raise SystemExit(f"recipe_study: --recipe {name}: unknown key {k!r}; known: {sorted(types)}")
        out[k] = v if "str" in str(types[k]) else (int(v) if "int" in str(types[k]) else float(v))
    return name, out


def read_specs(path: Path) -> list[tuple[str, str, Any]]:
    """``(label, "spec", ArchSpec)`` for every entry of a ``{label: spec}`` JSON file."""
    import json

    from recnas.space.spec import ArchSpec, SpecError

    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"recipe_study: --specs {path}: {e}") from None
    if not isinstance(d, dict) or not d:
        raise SystemExit(f"recipe_study: --specs {path}: expected a non-empty JSON object {{label: spec}}")
    out = []
    for label, spec in d.items():
        try:
            out.append((label, "spec", ArchSpec.from_dict(spec)))
        except SpecError as e:
            raise SystemExit(f"recipe_study: --specs {path}: {label}: {e}") from None
    return out


def architectures(baselines: list[str], baseline_space: str, space: str, n: int, seed: int) -> list[tuple[str, str, Any]]:
    """``(label, kind, architecture)``: the named baselines, then ``n`` sampled from ``space``."""
    import numpy as np

    from recnas.export.architecture import baseline_architecture
    from recnas.space.space import SearchSpace

    out = [(b, "baseline", baseline_architecture(b, baseline_space)) for b in baselines]
    sp = SearchSpace.load(space)
    rng = np.random.default_rng(seed)
    for i in range(n):
        spec = sp.sample(rng)
        out.append((f"{sp.name}#{i}:{spec.key()[:8]}", "sampled", spec))
    return out


def train_one(arch: Any, recipe: Any, seed: int, data_dir: Path, work: Path) -> dict[str, Any]:
    """Trains ``arch`` with ``recipe`` and ``seed``; validation metrics (the test split is not read)."""
    from recnas.data.loader import ParquetBatchLoader, load_prepared
    from recnas.export.architecture import build_model
    from recnas.train.loop import NonFiniteLossError
    from recnas.train.trainer import TrainConfig, train

    fm, splits = load_prepared(data_dir)
    t = recipe
    train_loader = ParquetBatchLoader(splits["train"], fm, batch_size=t.batch_size, shuffle=True, seed=seed,
                                      drop_last=True, fraction=t.fraction if t.fraction < 1.0 else None)
    val_loader = ParquetBatchLoader(splits["valid"], fm, batch_size=t.eval_batch_size)
    config = TrainConfig(epochs=t.epochs, max_steps=t.max_steps, dense_lr=t.dense_lr, table_lr=t.table_lr,
                         dense_eps=t.dense_eps, lr_schedule=t.lr_schedule, lr_warmup=t.lr_warmup, seed=seed,
                         checkpoint_every=0, keep_checkpoints=1, progress=False)
    run_dir = Path(tempfile.mkdtemp(dir=work))
    model = build_model(arch, fm, __import__("torch").device("meta"))
    params = sum(p.numel() for n, p in model.named_parameters() if "ebc" not in n and "embedding_bag" not in n)
    try:
        r = train(lambda device: build_model(arch, fm, device), train_loader, config=config, out_dir=run_dir,
                  val_loader=val_loader)
    except NonFiniteLossError:
        return {"status": "diverged", "val_logloss": math.nan, "val_auc": math.nan, "steps": 0,
                "train_seconds": math.nan, "params": params}
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"status": "ok", "val_logloss": r.val.logloss, "val_auc": r.val.auc, "steps": r.steps,
            "train_seconds": r.seconds, "params": params}


def summarise(rows: list[dict[str, Any]], recipes: list[str]) -> list[dict[str, Any]]:
    import numpy as np
    from scipy import stats

    def table(name: str) -> dict[tuple[str, int], float]:
        return {(r["arch"], int(r["seed"])): float(r["val_logloss"]) for r in rows
                if r["recipe"] == name and r["status"] == "ok"}

    ref = table(recipes[0])
    out = []
    for name in recipes:
        t = table(name)
        runs = [r for r in rows if r["recipe"] == name]
        pairs = sorted(set(t) & set(ref))
        d = np.array([t[k] - ref[k] for k in pairs])
        if len(d) > 1 and name != recipes[0]:
            lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d)) if d.std() > 0 else (d.mean(), d.mean())
        else:
            lo = hi = math.nan
        out.append({
            "recipe": name, "runs": len(runs), "diverged": sum(r["status"] != "ok" for r in runs),
            "val_logloss_mean": float(np.mean(list(t.values()))) if t else math.nan,
            "pairs": len(pairs), "diff_vs_first": float(d.mean()) if len(d) else math.nan,
            "diff_lo": lo, "diff_hi": hi, "wins_vs_first": int((d < 0).sum()),
        })
    return out


def per_arch(rows: list[dict[str, Any]], recipes: list[str]) -> str:
    import numpy as np

    archs = list(dict.fromkeys(r["arch"] for r in rows))
    lines = ["| architecture | " + " | ".join(recipes) + " |", "|---|" + "---|" * len(recipes)]
    for a in archs:
        cells = []
        for name in recipes:
            v = [float(r["val_logloss"]) for r in rows if r["arch"] == a and r["recipe"] == name and r["status"] == "ok"]
            n_div = sum(1 for r in rows if r["arch"] == a and r["recipe"] == name and r["status"] != "ok")
            cell = f"{np.mean(v):.4f}" + (f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else "") if v else "-"
            cells.append(cell + (f" ({n_div} diverged)" if n_div else ""))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/recipe_study.py", description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, metavar="PREPARED_DIR")
    p.add_argument("--recipe", action="append", required=True, metavar="NAME:key=value,...")
    p.add_argument("--baselines", nargs="*", default=["dlrm", "deepfm", "dcnv2"])
    p.add_argument("--baseline-space", default="ctr_extended")
    p.add_argument("--space", default="nasrec_small")
    p.add_argument("--archs", type=int, default=6)
    p.add_argument("--arch-seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ablate", choices=["layernorm"], default=None,
                   help="diagnostic only: run recnas's ops with every LayerNorm replaced by the identity "
                        "(what the LayerNorms cost or bring; not a model recnas ships)")
    p.add_argument("--specs", type=Path, default=None, metavar="SPECS.json",
                   help="more architectures: a JSON object {label: ArchSpec dict}")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    if a.ablate == "layernorm":
        import recnas.models.ops as ops

        ops._ln = lambda h, w, b: h  # every op calls ops._ln for its LayerNorms (spaces/README.md)

    import torch

    from recnas.train.scratch import TrainRecipe

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    recipes = [parse_recipe(r) for r in a.recipe]
    names = [n for n, _ in recipes]
    if len(set(names)) != len(names):
        raise SystemExit("recipe_study: recipe names must differ")
    base = TrainRecipe(epochs=a.epochs, batch_size=a.batch_size, fraction=a.fraction, validate=True)
    archs = architectures(a.baselines, a.baseline_space, a.space, a.archs, a.arch_seed)
    if a.specs is not None:
        archs += read_specs(a.specs)
    rows: list[dict[str, Any]] = []
    if a.out.exists():
        with a.out.open() as f:
            rows = list(csv.DictReader(f))
    done = {(r["recipe"], r["arch"], int(r["seed"])) for r in rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="recipe_study-"))
    total = len(archs) * len(recipes) * len(a.seeds)
    k = 0
    try:
        for seed in a.seeds:
            for label, kind, arch in archs:
                for name, over in recipes:
                    k += 1
                    if (name, label, seed) in done:
                        continue
                    recipe = replace(base, **over)
                    t0 = time.perf_counter()
                    m = train_one(arch, recipe, seed, a.data, work)
                    settings = {f.name: getattr(recipe, f.name) for f in fields(TrainRecipe)}
                    rows.append({"recipe": name, "arch": label, "kind": kind, "seed": seed, **m, "settings": settings})
                    with a.out.open("w", newline="") as f:
                        w = csv.DictWriter(f, fieldnames=FIELDS)
                        w.writeheader()
                        w.writerows(rows)
                    print(f"[{k}/{total}] {name:>12s} {label:32s} seed {seed}: {m['status']} val {m['val_logloss']:.4f} "
                          f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(rows, names)
    spath = a.out.with_name(a.out.stem + "_summary.csv")
    with spath.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]))
        w.writeheader()
        w.writerows(summary)
    print("| recipe | runs | diverged | mean val log loss | paired diff vs " + names[0] + " [95 % CI] | wins |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['recipe']} | {s['runs']} | {s['diverged']} | {s['val_logloss_mean']:.4f} | "
              f"{s['diff_vs_first']:+.4f} [{s['diff_lo']:+.4f}, {s['diff_hi']:+.4f}] | {s['wins_vs_first']}/{s['pairs']} |")
    print()
    print(per_arch(rows, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
