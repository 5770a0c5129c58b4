"""A split supernet for a bench warm-up fraction, at the single supernet's training steps.

Compute parity: the single supernet of warm-up fraction ``f`` trains ``S = epochs x len(loader(f))``
steps. The split run warms a parent up on ``f x (1 - split.finetune_fraction)`` of the training rows
(the same recipe; cached in ``OUTPUT/warmup/frac_<f'>/`` like any warm-up, so it is shared with a
single supernet of that fraction), splits it, and fine-tunes the sub-supernets for the steps left,
``S - parent steps``, on batches of the ``f`` rows (reshuffled). Training steps are therefore equal;
the measurement (forward passes, and for ``gm`` backward passes, of ``split.batch_size`` rows) comes
on top and is reported beside them (:func:`parity`), also in training-step equivalents
(:func:`step_equivalents`), with its own peak memory (:class:`recnas.lid.split.PeakRSS`).

With ``split.finetune_optimizer: continue`` (default) the level-1 sub-supernets continue the dense
Adagrad state the parent's warm-up left in its last checkpoint (``OUTPUT/warmup/frac_<f'>/checkpoints``).

The split is cached in ``OUTPUT/warmup/split_<method>_L<levels>/frac_<f>/`` (``split.json`` with the
regions, what was split and the counts; ``dense.pt`` the sub-supernets' dense weights); a folder
made with other settings is refused, naming both. While it is made, ``work/`` there journals every
choice measured, split made and fine-tuning checkpoint (:func:`recnas.lid.split.split_supernet`), so
a killed run resumes without redoing them; once ``split.json`` is written the sub-supernets' states
are removed from ``work/`` and ``work/journal.jsonl`` stays (what each process computed).

:func:`run_split_study` scores the inherited-weight estimators of a pipeline (e.g. ``oneshot`` and
``sigeo``) on the single supernet and on the split at every warm-up fraction above 0, against a
finished build's ground truth, and writes ``split_results.csv`` and ``split_report.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from recnas.config import to_dict

__all__ = ["split_for_fraction", "parity", "run_split_study", "split_dir", "step_equivalents"]


def split_dir(out: Path, cfg: Any, fraction: float) -> Path:
    s = cfg.split
    return out / "warmup" / f"split_{s.method}_L{s.levels}" / f"frac_{fraction:g}"


def _warmup_config(cfg: Any) -> Any:
    from recnas.train.warmup import WarmupConfig

    w = cfg.warmup
    return WarmupConfig(epochs=w.epochs, lr=w.lr, table_lr=w.table_lr, full_path_fraction=w.full_path_fraction,
                        seed=w.seed, checkpoint_every=50, progress=False)


def _settings(cfg: Any, fraction: float) -> dict[str, Any]:
    w = to_dict(cfg.warmup)
    w.pop("fractions")
    return {"split": cfg.split.identity(), "warmup": w, "fraction": fraction}


def split_for_fraction(cfg: Any, fraction: float, fm: Any, space: Any, splits: dict[str, Path], data_dir: Path,
                       out: Path, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """The split supernet of warm-up fraction ``fraction`` (module docstring) and its facts
    (:func:`parity`'s counts, seconds, what was split); found in its folder or made there."""
    import torch

    from recnas.data.loader import ParquetBatchLoader
    from recnas.lid.split import (SPLIT_FILE, clear_work, load_split, parent_optimizer_state, save_split,
                                  split_supernet)
    from recnas.study.context import first_batches, warm_supernet

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"split: warm-up fraction {fraction} has no warm-up to split (use fractions > 0)")
    sc, w = cfg.split, cfg.warmup
    folder = split_dir(out, cfg, fraction)
    settings = _settings(cfg, fraction)
    parent_fraction = round(fraction * (1.0 - sc.finetune_fraction), 12)  # 0.1 x 0.8 -> 0.08, not 0.08000000000000002
    config = _warmup_config(cfg)
    parent_dir = out / "warmup" / f"frac_{parent_fraction:g}"
    parent = warm_supernet(parent_dir, fm, space, splits["train"],
                           data_dir=data_dir, fraction=parent_fraction, batch_size=w.batch_size, config=config,
                           section="warmup", fraction_key="split.finetune_fraction")
    card_path = folder / SPLIT_FILE
    if card_path.exists():
        card = json.loads(card_path.read_text())
        if card.get("settings") != json.loads(json.dumps(settings)):
            raise ValueError(f"split: {folder} holds a split made with other settings ({card.get('settings')}) "
                             f"than asked now ({settings}); delete it or use another output folder")
        return load_split(folder, parent.supernet), card["facts"]

    loader = ParquetBatchLoader(Path(splits["train"]), fm, batch_size=w.batch_size, shuffle=True,
                                seed=w.seed + 1, drop_last=True, fraction=fraction)
    single_steps = w.epochs * len(loader)
    parent_steps = parent.steps
    finetune_steps = max(single_steps - parent_steps, 0)
    measure = first_batches(splits["train"], fm, sc.batches, sc.batch_size, key="split.batches",
                            size_key="split.batch_size")
    opt_state = None
    if sc.finetune_optimizer == "continue" and finetune_steps > 0:
        opt_state = parent_optimizer_state(parent_dir, parent.supernet)
    torch.manual_seed(sc.seed)
    t0 = time.perf_counter()
    work = folder / "work"
    split = split_supernet(parent.supernet, measure, sc, finetune_batches=loader, finetune_steps=finetune_steps,
                           lr=w.lr, eps=config.eps, progress=progress, parent_opt_state=opt_state,
                           workdir=work, identity=json.loads(json.dumps(settings)))
    rec = split.record
    peaks = [s["peak_rss_bytes"] for s in rec.splits if s.get("peak_rss_bytes") is not None]
    facts = {
        "fraction": fraction, "parent_fraction": parent_fraction, "single_steps": single_steps,
        "parent_steps": parent_steps, "finetune_steps": rec.finetune_steps,
        "measure_forward_passes": rec.forward_passes, "measure_backward_passes": rec.backward_passes,
        "measure_rows": sc.batch_size,
        "measure_step_equivalents": step_equivalents(rec.forward_passes, rec.backward_passes, sc.batch_size,
                                                     w.batch_size),
        "measure_peak_rss_bytes": max(peaks) if peaks else None,
        "signature_bytes": max((s.get("signature_bytes", 0) for s in rec.splits), default=0),
        "finetune_optimizer": sc.finetune_optimizer,
        "measure_seconds": rec.measure_seconds,
        "finetune_seconds": rec.finetune_seconds, "split_seconds": time.perf_counter() - t0,
        "parent_warmup_seconds": parent.seconds if parent.how == "warmed" else float("nan"),
        "memory": split.memory(), "splits": [{k: v for k, v in s.items() if k != "similarity"} for s in rec.splits],
    }
    save_split(split, folder, {"settings": settings, "facts": facts})
    clear_work(work)
    return split, facts


def step_equivalents(forward: int, backward: int, rows: int, train_batch: int) -> float:
    """The measurement's passes in training steps of ``train_batch`` rows, counting a training step
    as one forward and one backward pass and a backward pass as twice a forward: ``(forward x rows
    + 2 x backward x rows) / (3 x train_batch)``."""
    return (forward * rows + 2 * backward * rows) / (3 * train_batch)


def _unsplit_control(cfg: Any, fraction: float, facts: dict[str, Any], fm: Any, space: Any,
                     splits: dict[str, Path], out: Path) -> Any:
    """The split run's parent, fine-tuned whole (every op allowed) for the split's fine-tuning steps,
    with the split's recipe (tables frozen, dense Adagrad continued or fresh as ``split.finetune_optimizer``
    says) and batches."""
    from recnas.data.loader import ParquetBatchLoader
    from recnas.lid.split import Region, _cycle, finetune, parent_optimizer_state, restricted_copy
    from recnas.train.warmup import load_supernet

    w = cfg.warmup
    parent_dir = out / "warmup" / f"frac_{facts['parent_fraction']:g}"
    parent = load_supernet(parent_dir)
    net = restricted_copy(parent, Region())
    state = parent_optimizer_state(parent_dir, parent) if cfg.split.finetune_optimizer == "continue" else None
    loader = ParquetBatchLoader(Path(splits["train"]), fm, batch_size=w.batch_size, shuffle=True,
                                seed=w.seed + 1, drop_last=True, fraction=fraction)
    finetune(net, Region(), space, _cycle(loader), facts["finetune_steps"], lr=w.lr,
             eps=_warmup_config(cfg).eps, seed=cfg.split.seed, opt_state=state)
    return net


def parity(facts: dict[str, Any]) -> str:
    """One line: the split run's training steps against the single supernet's, and the measurement."""
    meas = f"{facts['measure_forward_passes']} forward"
    if facts["measure_backward_passes"]:
        meas += f" + {facts['measure_backward_passes']} backward"
    line = (f"single supernet {facts['single_steps']} steps; split {facts['parent_steps']} parent + "
            f"{facts['finetune_steps']} fine-tuning = {facts['parent_steps'] + facts['finetune_steps']} steps, "
            f"plus the measurement: {meas} passes of {facts['measure_rows']} rows")
    if facts.get("measure_step_equivalents") is not None:
        eq = facts["measure_step_equivalents"]
        line += f" (~{eq:.1f} training-step equivalents, {100 * eq / max(facts['single_steps'], 1):.0f} % of the single supernet's steps)"
    if facts.get("measure_peak_rss_bytes") is not None:
        line += (f"; measurement peak memory {facts['measure_peak_rss_bytes'] / 2**20:.1f} MiB above the resident "
                 f"set before it, signatures {facts.get('signature_bytes', 0) / 2**20:.2f} MiB")
    return line


def run_split_study(cfg: Any, source: str, from_dir: str | Path, out: str | Path | None = None,
                    estimators: tuple[str, ...] = ("oneshot", "sigeo"), progress: bool = True,
                    control: bool = False, variants: Sequence[tuple[str, int]] | None = None) -> Path:
    """Single supernet vs split at every warm-up fraction > 0, for the pipeline's estimator entries
    named in ``estimators`` (scored with inherited weights), judged against the ground truth of the
    build in ``from_dir`` (``recnas.bench.compare.read_built``). Warm-ups and splits go to
    ``cfg.output``; ``split_results.csv`` and ``split_report.md`` to ``out`` (default ``cfg.output``).

    ``control`` adds two contexts: the parent fine-tuned whole (no split) for the same steps with
    the same recipe, which tells the split's effect from the fine-tuning recipe's, and the parent
    alone (its warm-up's steps only), which tells the fine-tuning's effect from the shorter warm-up's.

    ``variants``: ``(method, levels)`` pairs to split and score beside the one single supernet
    (default: the ``split:`` section's own); each is ``split:`` with that method and levels, made
    (or found) in its own folder, one after the other, all against the same single-supernet scores."""
    import dataclasses

    from recnas.bench import stats
    from recnas.bench.compare import _supernet, fresh_stream, read_built, scoring_inputs
    from recnas.bench.groundtruth import sample_archs, truth_matrix
    from recnas.estimators import ScoringContext
    from recnas.space.space import SearchSpace

    if cfg.split is None:
        raise ValueError(f"{source}: no split: section; add one, e.g. split: {{method: lid, levels: 1}}")
    entries = [e for e in cfg.estimators if e.name in estimators and "inherit" in e.resolved_inits()]
    if not entries:
        raise ValueError(f"{source}: no estimator entry named {list(estimators)} scores inherited weights")
    base = Path(cfg.output)
    dst = Path(out) if out is not None else base
    table = read_built(cfg, Path(from_dir), source)
    space = SearchSpace.load(cfg.space)
    specs = sample_archs(space, cfg.num_archs, cfg.sample_seed)
    truth = truth_matrix(table, [s.key() for s in specs], cfg.train.seeds)
    data_dir, fm, splits, batches, val_batches = scoring_inputs(cfg, progress)
    sc = cfg.scoring
    rows = fresh_stream(cfg, fm, splits)  # oneshot finetune_rows: fresh
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    rows_info = []
    for frac in [f for f in cfg.warmup.fractions if f > 0]:
        single, wsecs, wsteps = _supernet(cfg, frac, space, fm, splits, data_dir, base, progress)
        nets: list[tuple[str, Any]] = [("single", lambda: single)]
        for method, levels in variants or [(cfg.split.method, cfg.split.levels)]:
            vcfg = dataclasses.replace(cfg, split=dataclasses.replace(cfg.split, method=method, levels=levels))

            def make(vcfg: Any = vcfg, frac: float = frac) -> Any:
                split, facts = split_for_fraction(vcfg, frac, fm, space, splits, data_dir, base, progress)
                rows_info.append({**facts, "method": vcfg.split.method, "levels": vcfg.split.levels})
                return split

            nets.append((f"{method} split L{levels}", make))
        if control:
            def ctl(frac: float = frac) -> Any:
                return _unsplit_control(cfg, frac, rows_info[-1], fm, space, splits, base)

            nets.append(("parent + fine-tuning, no split", ctl))

            def parent_alone(frac: float = frac) -> Any:
                from recnas.train.warmup import load_supernet

                return load_supernet(base / "warmup" / f"frac_{rows_info[-1]['parent_fraction']:g}")

            nets.append(("parent alone, no fine-tuning", parent_alone))
        for what, make_net in nets:
            net = make_net()
            ctx = ScoringContext(fm, batches, val_batches, supernet=net, init="inherit", seed=sc.seed, device="cpu",
                                 fresh_batches=rows)
            for e in entries:
                label = f"{e.display} | {what} | {100 * frac:g}%"
                t0 = time.perf_counter()
                s = np.asarray(e.make().score(specs, ctx), dtype=np.float64)
                seconds[label] = time.perf_counter() - t0
                scores[label] = np.where(np.isfinite(s), s, np.nanmin(s[np.isfinite(s)]) - 1.0)
                if progress:
                    print(f"  {label}: {seconds[label]:.1f} s", file=sys.stderr, flush=True)
            del net, ctx  # one split in memory at a time
    st = cfg.stats
    res = stats.compare(scores, truth, seconds=seconds, frac=st.top_frac, n_boot=st.n_boot, alpha=st.alpha,
                        seed=st.seed)
    dst.mkdir(parents=True, exist_ok=True)
    res.to_csv(dst / "split_results.csv")
    lines = [f"# Single supernet vs {cfg.split.method} split ({source})", "",
             f"{len(specs)} architectures of `{cfg.space}`, truth: the {len(cfg.train.seeds)}-seed mean test log loss "
             f"of the build in `{from_dir}`; bootstrap {100 * (1 - st.alpha):g} % intervals over architectures "
             f"({st.n_boot} replicates). Split settings: `{to_dict(cfg.split)}`.", ""]
    for f in rows_info:
        lines.append(f"- {f['method']} split L{f['levels']}, warm-up {100 * f['fraction']:g} %: {parity(f)}; "
                     f"measured in {f['measure_seconds']:.1f} s, fine-tuned in {f['finetune_seconds']:.1f} s; "
                     f"parameters {f['memory']}")
        for s in f["splits"]:
            lines.append(f"  - level {s['level']} [{s['parent']}]: split {s['choice']} into {s['groups'][0]} | "
                         f"{s['groups'][1]} (score {s['score']:.4f}; all: "
                         + ", ".join(f"{k} {v:.4f}" for k, v in s["scores"].items()) + ")")
    lines += ["", "| scores | Kendall | Spearman | top-10 % | seconds |", "|---|---|---|---|---|"]
    for label, r in res.iterrows():
        lines.append(f"| {label.replace('|', '/')} | {r['kendall']:.3f} [{r['kendall_lo']:.3f}, {r['kendall_hi']:.3f}] | "
                     f"{r['spearman']:.3f} [{r['spearman_lo']:.3f}, {r['spearman_hi']:.3f}] | "
                     f"{r['top']:.2f} [{r['top_lo']:.2f}, {r['top_hi']:.2f}] | {r['seconds']:.1f} |")
    path = dst / "split_report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
