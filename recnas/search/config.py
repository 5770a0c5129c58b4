"""The search pipeline file: one YAML file, validated into frozen dataclasses.

Every section has defaults; an unknown or mistyped key is a :class:`~recnas.config.ConfigError`
naming its dotted path and the allowed keys. ``--set key=value`` overrides are applied before
validation. NASRec's full-run settings are the defaults of ``search`` (regularized evolution,
population 128, sample 64, 8 children a generation, 2,048 candidates).

Example (``pipelines/search_criteo_real.yaml`` is a complete file)::

    data: {raw: [../shared/data/criteo_dac_train_first10k.txt.gz], format: criteo}
    space: nasrec_small
    supernet: {fraction: 0.5, batch_size: 256}
    estimator: {name: sigeo, params: {weights: public_criteo}}
    search: {budget: 256, population: 32, sample: 16, children: 8}
    top_k: 10
    retrain: {top: 3, epochs: 1}
    export: {top: 3}
    final: {top: 3, baselines: [dlrm, deepfm, dcnv2]}
    output: runs/criteo_real

    >>> cfg = load_pipeline("pipelines/search_criteo_real.yaml", ["search.budget=64"])  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from recnas.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from recnas.pipeline import DataConfig
from recnas.train.scratch import TrainRecipe
from recnas.train.trainer import DENSE_LR, MAX_LOSS, TABLE_LR

__all__ = [
    "SupernetConfig",
    "EstimatorConfig",
    "SearchConfig",
    "RetrainConfig",
    "ExportConfig",
    "FinalConfig",
    "OracleConfig",
    "PipelineConfig",
    "load_pipeline",
    "journal_config",
]


@dataclass(frozen=True)
class SupernetConfig:
    """The ``supernet:`` section: warm-up on a fraction of the training rows (NASRec's recipe).

    Attributes:
        fraction: fraction of the training split used for the warm-up (SiGeo's RecSys runs: 1 %).
        batch_size: per-process batch size.
        epochs: passes over that fraction (ignored when ``max_steps > 0``).
        max_steps: stop after this many steps (0: ``epochs`` passes).
        lr, table_lr: peak Adagrad lr of the dense weights / the tables (NASRec: 0.12).
        full_path_fraction: the full-path probability falls 1 -> 0 over this fraction of the steps.
        seed: model init and subnet sampling seed (the same on every rank).
        checkpoint_every: checkpoint every K steps so a killed warm-up resumes (0: only at the end).
        max_loss: divergence guard: a warm-up batch loss above it is handled like a NaN.
        on_nan: a NaN/inf warm-up loss (or one above ``max_loss``): ``raise`` (stop with a
            resumable checkpoint) or ``skip`` the step (counted).
        reuse: an existing warm-up folder (holding ``supernet.json``) to use instead of warming up;
            its space and feature map must match this pipeline's.
    """

    fraction: float = 0.01
    batch_size: int = 512
    epochs: int = 1
    max_steps: int = 0
    lr: float = TABLE_LR  # NASRec uses 0.12 for both
    table_lr: float = TABLE_LR
    full_path_fraction: float = 0.2
    seed: int = 0
    checkpoint_every: int = 200
    max_loss: float = MAX_LOSS
    on_nan: str = "raise"
    reuse: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"supernet.fraction must be in (0, 1], got {self.fraction}")
        if self.batch_size < 1:
            raise ValueError(f"supernet.batch_size must be >= 1, got {self.batch_size}")
        if self.checkpoint_every < 0:
            raise ValueError(f"supernet.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.on_nan not in ("raise", "skip"):
            raise ValueError(f"supernet.on_nan: expected 'raise' or 'skip', got {self.on_nan!r}")
        if not self.max_loss > 0:
            raise ValueError(f"supernet.max_loss must be positive, got {self.max_loss}")


#: The search's default estimator, chosen by issue 18's pre-registered rule over the three estimator
#: benchmarks (``reports/bench_ctr/default_rule/standings.md``): ZiCo with the per-tensor mean on
#: fresh weights. An ``estimator:`` section that names no estimator gets all three of these.
DEFAULT_ESTIMATOR: dict[str, Any] = {"name": "zico", "params": {"reduce": "mean"}, "init": "fresh"}


@dataclass(frozen=True)
class EstimatorConfig:
    """The ``estimator:`` section: how each candidate is scored (higher = predicted better).

    Attributes:
        name: a registered estimator (``recnas.estimators.ESTIMATORS``). Left out, the section is
            :data:`DEFAULT_ESTIMATOR` whole: ``zico`` with ``params: {reduce: mean}`` on ``init:
            fresh`` (what ranked best at SiGeo's cost on the estimator benchmarks). SiGeo, the paper's
            sub-one-shot method, is ``name: sigeo, params: {weights: public_criteo}, init: inherit``.
        params: the estimator's keyword parameters (e.g. ``{weights: public_criteo}``); left out,
            ``{}`` (the estimator's own defaults) for a named estimator, the default's for none.
        init: ``inherit`` (weights from the warmed-up supernet: sub-one-shot) or ``fresh``
            (seeded fresh weights: zero-shot; the warm-up still runs unless ``supernet.reuse``, as
            the export takes its weights from the supernet). Left out: ``inherit`` for a named
            estimator, ``fresh`` for the default.
        batches, batch_size: the scoring minibatches (the first ``batches x batch_size`` rows of
            the training split; the same on every rank).
        val_batches: validation minibatches (for the one-shot estimator; 0 = none).
        seed: seeds fresh initialisation and any randomness of the estimator.
        sharded: ``auto`` (default), ``true`` or ``false``: score through the TorchRec-sharded
            supernet (each rank holds only its table shards; the scoring batches' lookups are
            computed once through them, :mod:`recnas.study.sharded`) or through an unsharded copy
            on every rank. ``auto``: sharded under torchrun with ``init: inherit``. How the scores
            are computed, not what they are (equal to float rounding), so it is not part of the
            run's identity.
    """

    name: str | None = None
    params: dict[str, Any] | None = None
    init: str | None = None
    batches: int = 4
    batch_size: int = 512
    val_batches: int = 0
    seed: int = 0
    sharded: str | bool = "auto"

    def __post_init__(self) -> None:
        named = self.name is not None
        if not named:
            object.__setattr__(self, "name", DEFAULT_ESTIMATOR["name"])
        if self.params is None:
            object.__setattr__(self, "params", {} if named else dict(DEFAULT_ESTIMATOR["params"]))
        if self.init is None:
            object.__setattr__(self, "init", "inherit" if named else DEFAULT_ESTIMATOR["init"])
        if self.init not in ("inherit", "fresh"):
            raise ValueError(f"estimator.init: expected 'inherit' or 'fresh', got {self.init!r}")
        from recnas.study.sharded import check_sharded

        check_sharded(self.sharded, self.init)
        if self.batches < 1 or self.batch_size < 1 or self.val_batches < 0:
            raise ValueError(
                "estimator: batches and batch_size must be >= 1 and val_batches >= 0, got "
                f"batches={self.batches}, batch_size={self.batch_size}, val_batches={self.val_batches}"
            )


@dataclass(frozen=True)
class SearchConfig:
    """The ``search:`` section (defaults: NASRec's full run).

    Attributes:
        strategy: a registered strategy (``recnas.search.strategies.STRATEGIES``): ``evolution``
            (regularized evolution), ``random`` or ``predictor``.
        params: the strategy's keyword parameters, e.g. ``{population: 128, sample: 64,
            children: 8}`` for evolution (NASRec's, the defaults) or ``{predictor: ridge}``.
            For evolution, ``population``, ``sample`` and ``children`` may also be written
            directly under ``search:`` (the form before strategies took parameters).
        evaluator: what measures a candidate: ``estimator`` (the ``estimator:`` section's score on
            the warmed-up supernet or fresh weights) or ``oracle`` (train it from scratch with the
            ``oracle:`` section's recipe and seed; score = minus the validation log loss).
        budget: candidates to measure in all (NASRec: 2,048); with the oracle, training runs
            (a repeated architecture is taken from the store and costs none). Raising it and
            rerunning into the same folder continues the search.
        batch: candidates asked for at a time (0: the strategy's own; evolution: one generation).
        seed: the strategy's seed; the same on every rank, so all ranks propose the same candidates.
    """

    strategy: str = "evolution"
    params: dict[str, Any] = field(default_factory=dict)
    evaluator: str = "estimator"
    budget: int = 2048
    batch: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from recnas.search.strategies import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"search.strategy: unknown {self.strategy!r}; known: {sorted(STRATEGIES)}")
        if self.budget < 1:
            raise ValueError(f"search.budget must be >= 1, got {self.budget}")
        if self.evaluator not in ("estimator", "oracle"):
            raise ValueError(f"search.evaluator: expected 'estimator' or 'oracle', got {self.evaluator!r}")
        if self.batch < 0:
            raise ValueError(f"search.batch must be >= 0 (0: the strategy's own), got {self.batch}")

    def make(self, space: Any) -> Any:
        """The strategy, seeded (the same on every rank)."""
        from recnas.search.strategies import make_strategy

        return make_strategy(self.strategy, space, seed=self.seed, **self.params)


LEGACY_EVOLUTION_KEYS = ("population", "sample", "children")


def normalize_search(d: dict[str, Any]) -> dict[str, Any]:
    """Moves the legacy ``search.population/sample/children`` keys into ``search.params`` (a key
    given in both places is an error)."""
    s = d.get("search")
    if not isinstance(s, dict) or not any(k in s for k in LEGACY_EVOLUTION_KEYS):
        return d
    s = dict(s)
    params = dict(s.get("params") or {})
    for k in LEGACY_EVOLUTION_KEYS:
        if k in s:
            if k in params:
                raise ConfigError(f"search.{k} and search.params.{k} are both set; keep one")
            params[k] = s.pop(k)
    s["params"] = params
    return {**d, "search": s}


@dataclass(frozen=True)
class OracleConfig(TrainRecipe):
    """The ``oracle:`` section: the train-from-scratch evaluator of ``search.evaluator: oracle``.

    The fields of :class:`recnas.train.scratch.TrainRecipe` (the fidelity: ``fraction``, ``epochs``
    or ``max_steps``; the optimizer and schedule), plus the training ``seed``. Runs go to
    ``RUN_DIR/oracle/<architecture key>-s<seed>/`` and resume from their checkpoints.
    """

    section: ClassVar[str] = "oracle"
    seed: int = 0


@dataclass(frozen=True)
class RetrainConfig(TrainRecipe):
    """The ``retrain:`` section: train the best ``top`` candidates from scratch to confirm the order.

    The fields of :class:`recnas.train.scratch.TrainRecipe` (epochs / max_steps, batch_size,
    fraction, the optimizer and schedule, evaluation), plus:

    Attributes:
        top: how many of the best to retrain (0 = off).
        seed: model init and shuffle seed.

    Each retraining is a ``trained`` measurement in the run's trial store (keyed by the recipe and
    seed), so a rerun reads it back and an oracle query of the same recipe and seed reuses it.
    """

    section: ClassVar[str] = "retrain"
    top: int = 0
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top < 0:
            raise ValueError(f"retrain.top must be >= 0, got {self.top}")


@dataclass(frozen=True)
class ExportConfig:
    """The ``export:`` section: export the best ``top`` architectures (``recnas.export``; 0 = off)."""

    top: int = 1

    def __post_init__(self) -> None:
        if self.top < 0:
            raise ValueError(f"export.top must be >= 0, got {self.top}")


@dataclass(frozen=True)
class FinalConfig(TrainRecipe):
    """The ``final:`` section: production training of the exported best ``top`` architectures and
    of the ``baselines``, the same way on the same data (``recnas.export.train_export`` /
    ``train_baseline``); 0 = off. Needs ``export.top >= top``.

    The fields of :class:`recnas.train.scratch.TrainRecipe` (as ``recnas train``: whole epochs, so
    ``max_steps`` stays 0), plus:

    Attributes:
        top: exported architectures to train (0 = off).
        baselines: baselines trained beside them (``dlrm``, the space's presets ``deepfm`` and
            ``dcnv2``, the library presets ``deepfm_lib`` and ``dcn_lib``: ``recnas.export.names``).
        init: ``scratch`` (fresh weights) or ``inherited`` (the supernet's, as exported).
        seed: model init and shuffle seed (one run per model).
        seeds: several seeds instead (one run per model and seed, ``RUN_DIR/final/<model>-seed<S>/``;
            the report gives each model's mean and spread over them and its paired difference from
            the first baseline). Differences between these models are often within seed noise, so
            several seeds are how a search's payoff is judged; empty = ``seed`` alone.
    """

    section: ClassVar[str] = "final"
    batch_size: int = 512
    checkpoint_every: int = 0
    top: int = 0
    baselines: tuple[str, ...] = ("dlrm",)
    init: str = "scratch"
    seed: int = 0
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top < 0:
            raise ValueError(f"final.top must be >= 0, got {self.top}")
        if self.max_steps != 0:
            raise ValueError(f"final.max_steps: production training trains whole epochs (set final.epochs), got {self.max_steps}")
        if self.init not in ("scratch", "inherited"):
            raise ValueError(f"final.init: expected 'scratch' or 'inherited', got {self.init!r}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"final.seeds: seeds must be distinct, got {list(self.seeds)}")
        if self.seeds and self.seed != 0 and self.seed not in self.seeds:
            raise ValueError(f"final: give final.seed (one seed) or final.seeds (several), not both "
                             f"(seed {self.seed}, seeds {list(self.seeds)})")
        from recnas.export.names import BASELINES

        bad = [b for b in self.baselines if b not in BASELINES]
        if bad:
            raise ValueError(f"final.baselines: unknown {bad}; known: {sorted(BASELINES)}")

    def resolved_seeds(self) -> tuple[int, ...]:
        """The seeds each model trains with: ``seeds``, or ``(seed,)``."""
        return tuple(self.seeds) or (self.seed,)


@dataclass(frozen=True)
class PipelineConfig:
    """A whole search pipeline (see the module docstring)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(synth_rows=20_000))
    space: str = "nasrec_small"
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    top_k: int = 10
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    final: FinalConfig = field(default_factory=FinalConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    output: str = "runs/search"

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.final.top > self.export.top:
            raise ValueError(
                f"final.top={self.final.top} trains exported architectures, but export.top={self.export.top}"
            )


def load_pipeline(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Reads, overrides and validates a pipeline file; errors name the file and the dotted key.

    ``space`` is a shipped space's name or a space file; a relative file path not found from the
    working directory is looked up next to the pipeline file.
    """
    d = load_yaml(path)
    d = apply_overrides(d, list(overrides))
    space = d.get("space")
    if isinstance(space, str) and space.endswith((".yaml", ".yml")) and not Path(space).is_absolute():
        beside = Path(path).parent / space
        if not Path(space).exists() and beside.exists():
            d["space"] = str(beside.resolve())  # a space file next to the pipeline file
    d = normalize_search(d)
    cfg = from_dict(PipelineConfig, d, source=str(path))
    _check_estimator(cfg.estimator, str(path))
    _check_strategy(cfg.search, cfg.space, str(path))
    return cfg


def _check_estimator(est: EstimatorConfig, source: str) -> None:
    """Fails early on an unknown estimator name or parameter (the registry's message)."""
    from recnas.estimators import make_estimator

    try:
        make_estimator(est.name, **est.params).check_params()  # option values too, before any work
    except ValueError as e:
        raise ConfigError(f"{source}: 'estimator': {e}") from None


def _check_strategy(search: SearchConfig, space: str, source: str) -> None:
    """Fails early on an unknown strategy parameter or a bad value (the strategy's message)."""
    from recnas.space import SearchSpace

    try:
        search.make(SearchSpace.load(space))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{source}: 'search': {e}") from None


def journal_config(cfg: PipelineConfig, space: dict[str, Any]) -> dict[str, Any]:
    """What the journal header pins: everything that decides which candidates are proposed and
    what they score, the ops' version included. The budget, top-k, retraining, export, output folder and checkpoint cadence
    may change between a run and its continuation."""
    from recnas.models.ops import OPS_VERSION
    from recnas.space import SearchSpace

    data = cfg.data.identity()
    supernet = to_dict(cfg.supernet)
    for k in ("checkpoint_every", "on_nan", "max_loss"):  # when to save / what to do with a bad step
        supernet.pop(k)
    search = to_dict(cfg.search)
    search.pop("budget")
    strategy = cfg.search.make(SearchSpace.from_dict(space))
    search["params"] = {n: getattr(strategy, n) for n in strategy.param_names()}  # defaults spelled out
    if cfg.search.batch == 0:  # asking the strategy's own batch explicitly is the same run
        search["batch"] = strategy.default_batch

    header = {
        "ops_version": OPS_VERSION,
        "data": data,
        "space": space,
        "supernet": supernet,
        "estimator": {k: v for k, v in to_dict(cfg.estimator).items() if k != "sharded"},  # how, not what
        "search": search,
    }
    if cfg.search.evaluator == "oracle":  # only then: the headers of estimator searches are as before
        from recnas.train.scratch import recipe_identity

        header["oracle"] = {**recipe_identity(cfg.oracle), "seed": cfg.oracle.seed}
    else:
        search.pop("evaluator")
    return header
