"""The search run: data -> supernet warm-up -> scoring loop (journalled) -> retrain -> report -> export.

:func:`run_search` does the whole job of ``recnas search`` in one process or under torchrun. Every
step can be cut short and rerun: the data stage is cached, the warm-up resumes from its checkpoints
(and is skipped once ``supernet.json`` exists), and the search reads its history from the run's trial
store (``journal.jsonl``, :mod:`recnas.study`): proposals are recorded before they are measured and
measurements as they finish, so a killed search measures only what the store does not hold.

Run folder (``output:``), the layout ``recnas export RUN_DIR`` reads::

    RUN_DIR/pipeline.yaml     the resolved pipeline (overrides applied, defaults filled in)
    RUN_DIR/data.json         {"prepared": "<prepared data folder>"}
    RUN_DIR/space.yaml        the search space as data (also named in pipeline.yaml)
    RUN_DIR/supernet.json     the warmed-up supernet's card: load_supernet(RUN_DIR)
    RUN_DIR/supernet/         its weights (DCP), also loadable as load_supernet(RUN_DIR / "supernet")
    RUN_DIR/checkpoints/      warm-up checkpoints (resume)
    RUN_DIR/journal.jsonl     the trial store: header + one ``asked`` record per proposal and one
                              ``trial`` record per measured candidate (index, batch, key, spec,
                              measure, settings, score, seconds, cached); ``read_journal`` is the view
    RUN_DIR/strategy.json     the strategy's own summary, where it has one (``weaknas``: the best
                              evaluated architecture and the final weak predictor's top-1)
    RUN_DIR/retrain/          from-scratch retraining of the top candidates (retrain.top > 0)
    RUN_DIR/report.md, results.csv, top_k.csv, retrain.csv, *.png   the report
    RUN_DIR/export/           the exported best architectures (export.top > 0)
    RUN_DIR/final/, final.csv production training of the exported best and the baselines (final.top > 0)

Distributed (``torchrun --nproc-per-node N -m recnas search ...``): the warm-up shards the
supernet's tables across ranks (TorchRec DMP). Scoring keeps them sharded (``estimator.sharded:
auto``, the default, with ``init: inherit``): every rank loads only its table shards and the dense
part into the sharded supernet (DCP), and the scoring batches' pooled lookups are computed once
through the sharded tables, all ranks in lockstep (:mod:`recnas.study.sharded`); no rank holds
all tables. Candidates are then scored from those lookups and the replicated dense part, with no
collective per candidate: all ranks ask the strategy for the same generation in lockstep, each
rank scores every N-th not-yet-scored candidate of it, and the scores are all-gathered, so every
rank tells the strategy the same scores. ``estimator.sharded: false`` (and ``init: fresh``, whose
fresh tables are unsharded) loads an *unsharded* copy of the supernet on every rank instead
(``load_supernet``, tables reassembled from the shards); the scores are the same to float
rounding, so the choice is not part of the run's identity. Only rank 0 writes the journal,
the report and the export. A schema-1 ``journal.jsonl`` (recnas before the trial store) is
converted in place the first time its run folder is continued (the original kept as
``journal.v1.jsonl``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from recnas.config import to_dict
from recnas.pipeline import resolve_data
from recnas.faults import fault_point
from recnas.search.config import PipelineConfig, journal_config
from recnas.search.strategies import Strategy
from recnas.space import ArchSpec, SearchSpace
from recnas.study import Study, StoreError, TrialStore, convert_v1, digest
from recnas.study.evaluators import Evaluator, Measurement, ProxyEvaluator, TrainEvaluator

JournalError = StoreError  # the name the search used before the trial store

__all__ = [
    "SearchResult",
    "run_search",
    "search_loop",
    "open_store",
    "read_journal",
    "JOURNAL_FILE",
]

JOURNAL_FILE = "journal.jsonl"
PIPELINE_FILE = "pipeline.yaml"
DATA_FILE = "data.json"
SPACE_FILE = "space.yaml"
STRATEGY_FILE = "strategy.json"


@dataclass(frozen=True)
class SearchResult:
    """What a finished search reports.

    Attributes:
        run_dir: the run folder.
        trials: every journal record (dicts with index, key, spec, score, seconds, cached), in order.
        scored_now: candidates scored by the estimator in this invocation (not replayed/cached).
        seconds: wall time of this invocation's search loop.
        retrain: one dict per retrained candidate (key, score, val/test log loss and AUC).
        exported: folders written by the export (empty if off or unavailable).
        final: one row per model of the final training (``final.top > 0``), see ``recnas.search.final``.
    """

    run_dir: Path
    trials: list[dict[str, Any]] = field(repr=False)
    scored_now: int
    seconds: float
    retrain: list[dict[str, Any]] = field(default_factory=list)
    exported: list[Path] = field(default_factory=list)
    final: list[dict[str, Any]] = field(default_factory=list)

    def best(self, k: int = 1) -> list[dict[str, Any]]:
        """The ``k`` best distinct architectures, best first (NaN scores last)."""
        return top_trials(self.trials, k)


def top_trials(trials: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The ``k`` best distinct architectures of ``trials`` (first occurrence), best first."""
    seen: dict[str, dict[str, Any]] = {}
    for t in trials:
        seen.setdefault(t["key"], t)
    def order(t: dict[str, Any]) -> tuple[float, int]:
        s = t["score"]
        return (-(s if s is not None and math.isfinite(s) else -math.inf), t["index"])
    return sorted(seen.values(), key=order)[:k]


def read_journal(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The measured candidates of ``RUN_DIR/journal.jsonl`` (the search's view of its trial store),
    in index order, read-only: :func:`recnas.export.run.read_trials` (which checks every line and
    skips a partial last one), the first record of each index."""
    from recnas.export.run import read_trials

    first: dict[int, dict[str, Any]] = {}
    for r in read_trials(Path(run_dir)):
        first.setdefault(r["index"], r)
    return [first[i] for i in sorted(first)]


# -- stages ---------------------------------------------------------------------------------------


def _barrier(env: Any) -> None:
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


def _resolve_data_once(cfg: PipelineConfig, env: Any, progress: bool) -> Path:
    """Rank 0 prepares (and caches) the data first; the other ranks then find it in the cache."""
    if env.is_main:
        data_dir = resolve_data(cfg.data, progress=progress)
    _barrier(env)
    if not env.is_main:
        data_dir = resolve_data(cfg.data, progress=False)
    return Path(data_dir).resolve()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _warm_up(cfg: PipelineConfig, run_dir: Path, data_dir: Path, space: SearchSpace, fm: Any,
             env: Any, progress: bool) -> None:
    """Warms the supernet up into ``run_dir`` (resumable), copies a reused one, or does nothing
    when ``run_dir/supernet.json`` already exists (checked against the space and data):
    :func:`recnas.study.context.warm_supernet`, the warm-up the bench uses too."""
    from recnas.data.loader import load_prepared
    from recnas.study.context import warm_supernet
    from recnas.train.warmup import SUPERNET_FILE, WarmupConfig

    sn = cfg.supernet
    _, splits = load_prepared(data_dir)
    config = WarmupConfig(
        epochs=sn.epochs, max_steps=sn.max_steps, lr=sn.lr, table_lr=sn.table_lr,
        full_path_fraction=sn.full_path_fraction, seed=sn.seed,
        checkpoint_every=sn.checkpoint_every, max_loss=sn.max_loss, on_nan=sn.on_nan, progress=progress,
    )
    w = warm_supernet(run_dir, fm, space, splits["train"], data_dir=data_dir, fraction=sn.fraction,
                      batch_size=sn.batch_size, config=config, section="supernet",
                      describe={"world_size": env.world_size}, reuse=sn.reuse, env=env, load=False)
    if w.how == "found":
        return
    if w.how == "warmed" and env.is_main:
        print(
            f"recnas search: warm-up done: {w.steps} steps, {w.samples_per_s:,.0f} samples/s "
            f"-> {run_dir / SUPERNET_FILE}",
            file=sys.stderr,
        )
    _mirror_card(run_dir, env)


def _mirror_card(run_dir: Path, env: Any) -> None:
    """Puts a copy of the card inside ``RUN_DIR/supernet/`` (weights ``.``) so that
    ``load_supernet(RUN_DIR / "supernet")`` works as well as ``load_supernet(RUN_DIR)``."""
    from recnas.train.warmup import SUPERNET_DIR, SUPERNET_FILE

    if env.is_main:
        card = json.loads((run_dir / SUPERNET_FILE).read_text())
        card["weights"] = "."
        _write_atomic(run_dir / SUPERNET_DIR / SUPERNET_FILE, json.dumps(card, indent=2, sort_keys=True) + "\n")
    _barrier(env)


def _check_fresh_rows(cfg: PipelineConfig, world_size: int) -> None:
    """Refuses an estimator that reads further training rows (``oneshot finetune_rows: fresh``) with
    sharded scoring: their lookups would need the sharded tables, collectively, per candidate."""
    from recnas.estimators import make_estimator
    from recnas.study.sharded import use_sharded

    est = cfg.estimator
    if cfg.search.evaluator != "estimator" or not use_sharded(est.sharded, est.init, world_size):
        return
    if getattr(make_estimator(est.name, **est.params), "uses_fresh_rows", lambda: False)():
        raise ValueError("oneshot finetune_rows: fresh is not available with sharded scoring (estimator.sharded): "
                         "the further rows' lookups would need the sharded tables; set estimator.sharded: false "
                         "or finetune_rows: scoring")


def _scoring_context(cfg: PipelineConfig, run_dir: Path, data_dir: Path, fm: Any,
                     device: torch.device | None = None, env: Any = None) -> Any:
    """The estimator's data and weights: the first ``batches x batch_size`` training rows (and
    ``val_batches`` validation batches; the same on every rank,
    :func:`recnas.study.context.scoring_batches`, as in the bench) and the warmed-up supernet, all
    on ``device`` (the search passes its ``env.device``: the process's GPU, or CPU; ``None``: as
    ``RECNAS_DEVICE`` says).

    The supernet is sharded over the ranks when ``estimator.sharded`` says so
    (:func:`recnas.study.sharded.use_sharded`; ``auto``: under torchrun with inherited weights):
    the batches' lookups are computed once through the sharded tables, collectively
    (:func:`recnas.study.sharded.sharded_scoring_context`). Otherwise each rank loads its own
    unsharded copy (``load_supernet``)."""
    from recnas.data.loader import load_prepared
    from recnas.estimators import ScoringContext
    from recnas.study.context import FreshBatches, scoring_batches
    from recnas.study.sharded import sharded_scoring_context, use_sharded
    from recnas.train.warmup import load_supernet

    est = cfg.estimator
    if device is None:
        from recnas.device import resolve_device

        device = torch.device(resolve_device())
    _, splits = load_prepared(data_dir)
    batches, val_batches = scoring_batches(splits, fm, batches=est.batches, val_batches=est.val_batches,
                                           batch_size=est.batch_size, section="estimator")
    world = env.world_size if env is not None else 1
    if use_sharded(est.sharded, est.init, world):
        if env is None:
            from recnas.train.distributed import init_distributed

            env = init_distributed()
        ctx, sn = sharded_scoring_context(run_dir, fm, batches, val_batches, env, seed=est.seed)
        if env.is_main:
            print(f"recnas search: scoring through the sharded supernet: {sn.local_table_bytes / 2**20:,.1f} MiB "
                  f"of tables on rank 0 ({sn.local_table_bytes / sn.full_table_bytes:.0%} of one full copy, "
                  f"{sn.full_table_bytes / 2**20:,.1f} MiB; {env.world_size} rank(s))", file=sys.stderr)
        return ctx
    supernet = load_supernet(run_dir, device=device) if est.init == "inherit" else None
    # the rows after the scoring batches, read lazily (oneshot finetune_rows: fresh; nothing else reads them)
    rows = FreshBatches(splits["train"], fm, est.batch_size, est.batches, section="estimator")
    return ScoringContext(
        fm, batches=batches, val_batches=val_batches,
        supernet=supernet, init=est.init, seed=est.seed, device=device, fresh_batches=rows,
    )


# -- the search loop ------------------------------------------------------------------------------


class _Bar:
    """tqdm bar on rank 0: candidates/s and the best score so far."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="search", unit="cand",
                             dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, best: float, scored: int, cached: int) -> None:
        if self._bar is not None:
            self._bar.update(n)
            self._bar.set_postfix(best=f"{best:.4g}", scored=scored, cached=cached, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _evaluate_share(specs: list[ArchSpec], evaluator: Evaluator, env: Any) -> list[Measurement]:
    """Measures ``specs`` split over the ranks (rank r takes items r, r + N, ...), one round of N at
    a time; returns every spec's measurement on every rank, in order (with N > 1 processes, the
    score and seconds only)."""
    from recnas.train.distributed import all_gather_1d

    if env.world_size == 1:
        return evaluator.evaluate(specs)
    out: list[Measurement] = []
    w = env.world_size
    for start in range(0, len(specs), w):
        round_specs = specs[start:start + w]
        mine = torch.zeros(0, dtype=torch.float64)
        if env.rank < len(round_specs):
            m = evaluator.evaluate([round_specs[env.rank]])[0]
            mine = torch.tensor([m.score, m.seconds], dtype=torch.float64)
        got = all_gather_1d(mine, env).cpu().double().numpy() if w > 1 else mine.numpy()
        out += [Measurement(float(got[2 * i]), float(got[2 * i + 1])) for i in range(len(round_specs))]
    return out


def search_loop(
    strategy: Strategy,
    evaluator: Evaluator,
    study: Study,
    budget: int,
    batch: int,
    env: Any,
    progress: bool = True,
) -> int:
    """Asks, measures and records candidates until the study holds ``budget`` measured ones;
    returns how many it measured (not taken from the store).

    Proposals are asked for ``batch`` at a time and recorded as pending (``asked``) before they are
    measured, always the full batch whatever the budget, so the sequence of proposals does not
    depend on the budget. Pending proposals below the budget (a killed run's, or those past an
    earlier, smaller budget) are measured before anything new is asked. A candidate whose
    architecture the store already holds a measurement of (same measure and settings) is recorded
    from it (``cached: true``, 0 s); so is, for the train-from-scratch oracle, one that builds the
    same model as a measured one (``values.twin_of`` names it; :data:`recnas.study.study.TWIN_MEASURES`). Records are written (rank 0) in index order, each as soon as
    it and all before it are known.
    """
    from recnas.models.layout import functional_key
    from recnas.study.study import TWIN_MEASURES

    def same_as(t: Any) -> str:  # what makes two proposals one measurement
        return functional_key(t.spec) if study.measure in TWIN_MEASURES else t.key

    done_before = {t.key: t.score for t in study.history() if t.done}
    best = max((s for s in done_before.values() if math.isfinite(s)), default=-math.inf)
    n_done = sum(1 for t in study.history() if t.done and t.index < budget)
    bar = _Bar(budget, n_done, progress and env.is_main)
    scored, cached_n = 0, 0
    try:
        while True:
            pending = study.pending(max_index=budget)
            if not pending:
                if study.next_index >= budget:
                    break
                pending = [t for t in study.ask_record(strategy.ask(study, batch)) if t.index < budget]
            scores: list[float | None] = [None] * len(pending)
            cached: list[bool] = [False] * len(pending)
            found: list[Measurement | None] = [None] * len(pending)
            first_of: dict[str, int] = {}
            to_score: list[int] = []
            same = [same_as(t) for t in pending]
            for j, t in enumerate(pending):
                rec = study.lookup(t.spec)
                if rec is not None:  # measured before, or a twin of one measured (the oracle's runs)
                    scores[j] = math.nan if rec["score"] is None else rec["score"]
                    cached[j] = True
                    twin = {} if rec["key"] == t.key else {"twin_of": rec["key"]}
                    found[j] = Measurement(scores[j], 0.0, {**(rec.get("values") or {}), **twin})
                elif same[j] not in first_of:
                    first_of[same[j]] = j
                    to_score.append(j)
            done = 0
            for start in range(0, max(len(to_score), 1), env.world_size):
                chunk = to_score[start:start + env.world_size]
                for j, m in zip(chunk, _evaluate_share([pending[j].spec for j in chunk], evaluator, env)):
                    scores[j], found[j] = m.score, m
                    scored += 1
                # Repeats within the batch become known as soon as their first occurrence is.
                for j, t in enumerate(pending):
                    first = first_of.get(same[j])
                    if scores[j] is None and first is not None and scores[first] is not None:
                        scores[j], cached[j] = scores[first], True
                        twin = {} if pending[first].key == t.key else {"twin_of": pending[first].key}
                        found[j] = Measurement(scores[j], 0.0, {**found[first].values, **twin})
                while done < len(pending) and scores[done] is not None:
                    t, s = pending[done], scores[done]
                    m = found[done]
                    study.tell_record(t, s, seconds=0.0 if cached[done] else m.seconds, cached=cached[done],
                                      values=m.values, train_runs=0 if cached[done] else m.train_runs)
                    fault_point("search.trial")
                    cached_n += cached[done]
                    if math.isfinite(s):
                        best = max(best, s)
                    bar.update(1, best, scored, cached_n)
                    done += 1
    finally:
        bar.close()
    return scored


def open_store(run_dir: Path, header: dict[str, Any], cfg: PipelineConfig, measure: str, settings: str,
               batch: int) -> TrialStore:
    """The run folder's trial store (``journal.jsonl``), converting a schema-1 journal once."""
    path = run_dir / JOURNAL_FILE
    if path.exists() and path.stat().st_size > 0:
        first = path.open("rb").readline()
        try:
            head = json.loads(first)
        except json.JSONDecodeError:
            head = {}
        if head.get("type") == "header" and head.get("version") == 1:
            old = _translate_v1_config(head.get("config") or {})
            from recnas.study import check_identity

            check_identity(old, header, str(path))
            n = convert_v1(path, header, measure, settings, batch)
            print(f"recnas search: {path}: converted a schema-1 journal to the trial store ({n} records; "
                  f"the original is kept as {path.with_name('journal.v1.jsonl').name})", file=sys.stderr)
    return TrialStore.open(path, header)


def _translate_v1_config(c: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 journal header's config in today's keys (the search section's strategy parameters)."""
    c = json.loads(json.dumps(c))
    s = c.get("search")
    if isinstance(s, dict) and "params" not in s:
        strategy = s.get("strategy", "evolution")
        params = {k: s.pop(k) for k in ("population", "sample", "children") if k in s}
        children = params.get("children", 8)
        if strategy != "evolution":
            params = {}
        s.update(params=params, batch=children)
    return c


# -- the whole run --------------------------------------------------------------------------------


def run_search(cfg: PipelineConfig, *, resume: bool = False, progress: bool = True,
               env: Any = None) -> SearchResult:
    """Runs (or continues) the search of ``cfg`` into ``cfg.output`` (collective under torchrun).

    Args:
        cfg: the validated pipeline.
        resume: require an existing run to continue (a rerun into the same folder continues it
            either way; the flag only makes a missing journal an error).
        progress: progress bars and stage messages on rank 0.
        env: from ``init_distributed()`` (called if ``None``).
    """
    from recnas.data.loader import load_prepared
    from recnas.estimators import make_estimator
    from recnas.train.distributed import init_distributed

    env = env or init_distributed()
    run_dir = Path(os.path.expanduser(cfg.output)).resolve()
    journal_path = run_dir / JOURNAL_FILE
    if resume and not journal_path.exists():
        raise FileNotFoundError(f"--resume: no search to continue in {run_dir} (no {JOURNAL_FILE})")
    space = SearchSpace.load(cfg.space)
    estimator = make_estimator(cfg.estimator.name, **cfg.estimator.params)

    def say(msg: str) -> None:
        if progress and env.is_main:
            print(f"recnas search: {msg}", file=sys.stderr)

    data_dir = _resolve_data_once(cfg, env, progress)
    fm, splits = load_prepared(data_dir)

    # The store first: a run folder written by another configuration is refused before any work.
    header = journal_config(cfg, space.to_dict())
    oracle = cfg.search.evaluator == "oracle"
    if oracle and env.world_size > 1:
        raise ValueError("search.evaluator: oracle trains one architecture per query in one process; "
                         "run it without torchrun (or score with an estimator)")
    _check_fresh_rows(cfg, env.world_size)  # before the warm-up

    def make_oracle() -> Evaluator:  # the train-from-scratch evaluator (built when first needed)
        return TrainEvaluator(cfg.oracle, cfg.oracle.seed, data_dir, fm, splits, run_dir / "oracle",
                              data_identity=header["data"], env=env)

    the_oracle = make_oracle() if oracle else None
    measure = "trained" if oracle else cfg.estimator.name
    settings = the_oracle.settings if oracle else digest(measurement_identity(header))
    strategy = cfg.search.make(space)
    batch = cfg.search.batch or strategy.default_batch
    store = None
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(run_dir, header, cfg, measure, settings, batch)
        _write_atomic(run_dir / PIPELINE_FILE, yaml.safe_dump(to_dict(cfg), sort_keys=False))
        _write_atomic(run_dir / DATA_FILE, json.dumps({"prepared": str(data_dir)}, indent=2) + "\n")
        _write_atomic(run_dir / SPACE_FILE, yaml.safe_dump(space.to_dict(), sort_keys=False))
    records = _broadcast_past(store.records if store is not None else None, env)
    if store is None:  # ranks > 0 keep the same records in memory
        store = TrialStore.memory(header)
        for r in records:
            store._add(r)
    study = Study(store, space, measure=measure, settings=settings, name="search",
                  seed=cfg.oracle.seed if oracle else None)
    n_past = sum(1 for t in study.history() if t.done)
    if n_past:
        say(f"continuing {run_dir}: {n_past} candidates in the store are not measured again")

    try:
        say(f"data {data_dir} | space {space.name} | run folder {run_dir}")
        _warm_up(cfg, run_dir, data_dir, space, fm, env, progress)
        if oracle:
            evaluator: Evaluator = the_oracle
            what = f"train-from-scratch oracle (seed {cfg.oracle.seed}; budget in training runs)"
            study.evaluators["oracle"] = evaluator
        else:
            ctx = _scoring_context(cfg, run_dir, data_dir, fm, env.device, env)
            evaluator = ProxyEvaluator(estimator, ctx, identity=measurement_identity(header))
            what = f"estimator {cfg.estimator.name} ({cfg.estimator.init})"
            study.evaluators.update(estimator=evaluator, oracle=make_oracle)
        say(f"searching: {cfg.search.strategy}, budget {cfg.search.budget}, {what}, {env.world_size} process(es)")
        t0 = time.perf_counter()
        scored = search_loop(strategy, evaluator, study, cfg.search.budget, batch, env, progress)
        seconds = time.perf_counter() - t0
    except BaseException:
        store.close()
        raise
    trials = read_journal(run_dir) if env.is_main else []
    trials = [t for t in trials if t["index"] < cfg.search.budget] if env.is_main else []
    say(f"search done: {scored} scored now in {seconds:.1f} s; {len(trials)} candidates in the journal")
    if env.is_main and callable(getattr(strategy, "summary", None)):
        _write_atomic(run_dir / STRATEGY_FILE, json.dumps(strategy.summary(study), indent=2) + "\n")

    from recnas.search.retrain import retrain_top

    try:
        retrained = retrain_top(cfg, run_dir, data_dir, fm, _broadcast_past(trials, env), env, progress, store)
        exported = _export(cfg, run_dir, say) if env.is_main else []
        exported = [Path(p) for p in _broadcast_past([str(p) for p in exported], env)]
        final: list[dict[str, Any]] = []
        if cfg.final.top > 0:
            from recnas.search.final import train_final

            if not exported:
                raise RuntimeError("final: nothing was exported to train (see the export message above)")
            final = train_final(cfg.final, run_dir, exported, data_dir, env, progress, store)
    finally:
        store.close()
    if env.is_main:
        from recnas.search.report import write_report

        paths = write_report(run_dir, cfg, fm, trials, retrained, search_seconds=seconds, final=final)
        say(f"report: {paths[0]}")
    _barrier(env)
    return SearchResult(run_dir, trials, scored, seconds, retrained, exported, final)


def measurement_identity(header: dict[str, Any]) -> dict[str, Any]:
    """What decides an estimator's score in a search run: everything the store's header pins except
    the strategy (the ops, the data, the space, the warm-up and the estimator section). (The
    oracle's measurements are keyed by its recipe, the data and the ops, as everywhere.)"""
    return {k: v for k, v in header.items() if k not in ("search", "oracle")}


def _broadcast_past(trials: list[dict[str, Any]] | None, env: Any) -> list[dict[str, Any]]:
    """Rank 0's journal records on every rank (all ranks replay the same history)."""
    if env.world_size == 1:
        return list(trials or [])
    import torch.distributed as dist

    box = [trials if env.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return list(box[0] or [])


def _export(cfg: PipelineConfig, run_dir: Path, say: Any) -> list[Path]:
    """The top ``export.top`` through ``recnas.export.export_run`` ."""
    if cfg.export.top == 0:
        return []
    try:
        from recnas.export import export_run
    except ImportError as e:
        print(
            f"recnas search: export skipped: recnas.export.export_run is not available ({e}); "
            f"export later with `recnas export {run_dir} --top {cfg.export.top}`",
            file=sys.stderr,
        )
        return []
    index = run_dir / "export" / "index.json"
    if index.exists():  # a rerun of a finished search: keep the export of the same ranking
        from recnas.export.run import ranking_sha256

        done = json.loads(index.read_text())
        same = done.get("source", {}).get("ranking_sha256") == ranking_sha256(run_dir)
        if same and len(done.get("exports", [])) >= cfg.export.top:
            return [run_dir / "export" / e["folder"] for e in done["exports"][: cfg.export.top]]
    out = export_run(run_dir, cfg.export.top, run_dir / "export")
    twins = json.loads((run_dir / "export" / "index.json").read_text()).get("twins_skipped", [])
    skipped = f" (skipped {len(twins)} spec(s) building the same model as a better-ranked one)" if twins else ""
    say(f"exported {len(out)} architecture(s){skipped} -> {run_dir / 'export'}")
    return [Path(p) for p in out]


def scores_array(trials: list[dict[str, Any]]) -> np.ndarray:
    """The scores of ``trials`` as float64 (``None`` -> NaN)."""
    return np.array([math.nan if t["score"] is None else t["score"] for t in trials], dtype=np.float64)
