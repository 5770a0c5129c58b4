"""SiGeo seconds per candidate vs one training step of the same subnet, measured in the same run.

For ``--candidates`` random subnets of ``--space`` (NASRec-Small by default) on a Criteo-shaped
feature map (13 dense, 26 sparse features, synthetic ids), this times:

- ``sigeo``: ``SiGeo().score([spec], ctx)`` with ``--batches`` x ``--batch`` rows and inherited
  weights -- extracting the candidate's dense part, the per-minibatch gradients and the three terms
  (the embedding lookups are shared by all candidates and timed once, separately);
- ``sigeo_rows`` (with ``--rows``): the same with ``embeddings="rows"``;
- ``extract``: ``supernet.extract_dense(spec)`` alone (part of ``sigeo``);
- ``fwd_bwd_x4``: the floor of any per-minibatch gradient proxy: ``--batches`` plain forward +
  backward passes of the candidate's extracted dense part on the same inputs, nothing else;
- ``flop_floor``: the compute floor of ``fwd_bwd_x4``: 3 x ``--batches`` x ``--batch`` x the
  candidate's forward FLOPs per example (``dense_flops_per_example``; backward = 2 x forward) at
  the single-matrix-product rate measured in the same run (``--batch`` x 1024 @ 1024 x 1024
  sgemm, best of 20) -- what 4 gradient passes would cost if every FLOP ran at sgemm speed;
- ``train_step``: one Adagrad step (forward + backward + optimizer, tables included) of the
  standalone ``CTRModel`` of the same spec on one ``--batch``-row batch (the reference).

- ``sigeo_2t``: ``sigeo`` again with ``--search-threads`` (default 2) torch threads.

It prints the median, 10th and 90th percentiles over candidates (after ``--warmup`` untimed ones)
and each figure's ratio to ``train_step``, then the goal of issue 15: a 2,048-candidate SiGeo search
of NASRec-Small (NASRec's budget) in at most 15 minutes on 2 cores, projected as 2,048 x the *mean*
``sigeo_2t`` seconds (one process, 2 threads) and, beside it, 1,024 x the mean ``sigeo`` seconds
(2 processes of 1 thread, as ``torchrun --nproc-per-node 2 -m recnas search`` splits the
candidates, assuming the two do not slow each other down).

``--reference-path`` also times ``sigeo_before``: the same scores through the code before the
scoring speed-ups (the subnet's dense part initialised, then overwritten with copies of the slices
gathered element by element; ZiCo's statistics with a new tensor per operation, over whole tensors),
kept here as the reference, and checks that the two give the same scores bit for bit.

    .venv/bin/python benchmarks/bench_sigeo.py [--candidates 20] [--threads 1] [--reference-path]
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

from recnas.cli import passive_openmp_waits

passive_openmp_waits()  # as the recnas commands do: idle OpenMP threads sleep (2-thread timings on shared cores)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recnas.data.batch import random_batch  # noqa: E402
from recnas.data.feature_map import DenseFeature, FeatureMap, SparseFeature  # noqa: E402
from recnas.estimators import ScoringContext, SiGeo  # noqa: E402
from recnas.models import Supernet  # noqa: E402
from recnas.models.ctr_model import dense_flops_per_example  # noqa: E402
from recnas.space import SearchSpace  # noqa: E402

SEARCH_CANDIDATES = 2048  # NASRec's search budget
SEARCH_GOAL_S = 15 * 60  # issue 15: at most 15 minutes on 2 cores


def criteo_like(vocab: int) -> FeatureMap:
    return FeatureMap(
        "criteo",
        dense=tuple(DenseFeature(f"I{i}") for i in range(1, 14)),
        sparse=tuple(SparseFeature(f"C{i}", vocab) for i in range(1, 27)),
    )


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def _snr_before(gs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``recnas.estimators.zico._snr`` as it was before the scoring speed-ups (the reference)."""
    n = len(gs)
    keep = torch.zeros_like(gs[0], dtype=torch.bool)
    mean = torch.zeros_like(gs[0])
    mean_abs = torch.zeros_like(gs[0])
    for g in gs:
        keep |= g != gs[0]
        mean += g
        mean_abs += g.abs()
    mean /= n
    mean_abs /= n
    var = torch.zeros_like(gs[0])
    for g in gs:
        var += (g - mean).square()
    std = var.div_(n).sqrt_()
    keep &= std > 0
    return keep, mean_abs.div_(torch.where(keep, std, 1.0))


def _extract_dense_before(self: Supernet, spec):  # noqa: ANN001, ANN202
    """``Supernet.extract_dense`` as it was before the scoring speed-ups (the reference)."""
    from recnas.models import DenseArch

    device = self._dense_device()
    p = self.plan(spec, device)
    arch = DenseArch(self.feature_map.num_dense, self.feature_map.num_sparse, spec, device)
    with torch.no_grad():
        state = {f"net.{k}": v.detach().clone() for k, v in self.dense_arch.sliced_state(p).items()}
    arch.load_state_dict(state, strict=True)
    return arch


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Scores through the code before the scoring speed-ups while inside."""
    from recnas.estimators import zico
    from recnas.models import ops

    saved = zico._snr, Supernet.extract_dense, ops.index_runs
    zico._snr, Supernet.extract_dense = _snr_before, _extract_dense_before
    ops.index_runs = lambda idx: None  # column gathers element by element (index_select), as before
    try:
        yield
    finally:
        zico._snr, Supernet.extract_dense, ops.index_runs = saved


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="nasrec_small")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=10_000, help="rows per table (synthetic ids)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the 2 cores are shared)")
    ap.add_argument("--search-threads", type=int, default=2,
                    help="torch threads of the sigeo_2t timing and the one-process search projection (default 2)")
    ap.add_argument("--reference-path", action="store_true",
                    help="also time SiGeo through the code before the scoring speed-ups (same scores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--rows", action="store_true", help="also time SiGeo(embeddings='rows')")
    ap.add_argument("--no-flush-denormal", action="store_true",
                    help="keep denormal floats (the recnas CLI flushes them)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(not args.no_flush_denormal)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    fm = criteo_like(args.vocab)
    space = SearchSpace.load(args.space)
    torch.manual_seed(args.seed)
    supernet = Supernet(fm, space).to(device)
    g = torch.Generator().manual_seed(args.seed)
    batches = [random_batch(fm, args.batch, g) for _ in range(args.batches)]
    ctx = ScoringContext(fm, batches, supernet=supernet, init="inherit", seed=args.seed, device=device)
    t_emb = timed(lambda: ctx.embeddings("train", max(space.embedding_dims)), device)

    a = torch.randn(args.batch, 1024, device=device)
    w = torch.randn(1024, 1024, device=device)
    t_mm = min(timed(lambda: torch.mm(a, w), device) for _ in range(20))
    sgemm_flops = 2 * args.batch * 1024 * 1024 / t_mm

    rng = np.random.default_rng(args.seed)
    specs = [space.sample(rng) for _ in range(args.warmup + args.candidates)]
    sigeo, sigeo_rows = SiGeo(), SiGeo(embeddings="rows")
    train_batch = batches[0].to(device)
    kinds = ["sigeo", "sigeo_2t", *(["sigeo_before"] if args.reference_path else []),
             *(["sigeo_rows"] if args.rows else []), "extract", "fwd_bwd_x4", "flop_floor", "train_step"]
    same_scores: list[bool] = []
    rows: dict[str, list[float]] = {k: [] for k in kinds}
    n_params: list[int] = []
    for i, spec in enumerate(specs):
        model = supernet.extract(spec)
        opt = torch.optim.Adagrad(model.parameters(), lr=0.01)

        def step() -> None:
            logits = model(train_batch.dense_features, train_batch.sparse_features)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, train_batch.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # first step allocates optimizer state; time the second
        cand = ctx.candidate(spec)

        def fwd_bwd() -> None:
            for cb in cand.batches:
                logits = cand.module(cb.dense, cb.emb)
                torch.nn.functional.binary_cross_entropy_with_logits(logits, cb.labels).backward()

        t = {
            "fwd_bwd_x4": timed(fwd_bwd, device),
            "train_step": timed(step, device),
            "extract": timed(lambda: supernet.extract_dense(spec), device),
            "sigeo": timed(lambda: sigeo.score([spec], ctx), device),
        }
        with threads(args.search_threads):
            t["sigeo_2t"] = timed(lambda: sigeo.score([spec], ctx), device)
        if args.reference_path:
            new = sigeo.score([spec], ctx)
            with reference_path():
                t["sigeo_before"] = timed(lambda: sigeo.score([spec], ctx), device)
                old = sigeo.score([spec], ctx)
            same_scores.append(bool(np.array_equal(new, old)))
        t["flop_floor"] = 3 * args.batches * args.batch * dense_flops_per_example(fm.num_dense, fm.num_sparse, spec) / sgemm_flops
        if args.rows:
            t["sigeo_rows"] = timed(lambda: sigeo_rows.score([spec], ctx), device)
        if i >= args.warmup:
            n_params.append(model.num_params(include_embeddings=False))
            for k, v in t.items():
                rows[k].append(v)

    ref = float(np.median(rows["train_step"]))
    print(
        f"space={args.space} candidates={args.candidates} batch={args.batch}x{args.batches} "
        f"device={device} threads={torch.get_num_threads()} vocab={args.vocab}"
    )
    q = np.quantile(n_params, [0.1, 0.5, 0.9]) / 1e6
    print(f"dense parameters per candidate (M): p10 {q[0]:.2f}  median {q[1]:.2f}  p90 {q[2]:.2f}")
    print(f"sgemm ({args.batch}x1024 @ 1024x1024): {sgemm_flops / 1e9:.1f} GFLOP/s; fwd_bwd_x4 runs at "
          f"{np.median(np.array(rows['flop_floor']) / np.array(rows['fwd_bwd_x4'])):.2f} x that rate (median)")
    print(f"embedding lookups for the context (once, shared by all candidates): {t_emb:.4f} s")
    print(f"{'what':<12} {'median s':>10} {'p10 s':>10} {'p90 s':>10} {'x train_step':>13}")
    for k in kinds:
        v = np.array(rows[k])
        print(
            f"{k:<12} {np.median(v):>10.4f} {np.quantile(v, 0.1):>10.4f} "
            f"{np.quantile(v, 0.9):>10.4f} {np.median(v) / ref:>13.2f}"
        )
    mean_2t, mean_1t = float(np.mean(rows["sigeo_2t"])), float(np.mean(rows["sigeo"]))
    one_proc = SEARCH_CANDIDATES * mean_2t
    two_proc = SEARCH_CANDIDATES * mean_1t / 2

    def verdict(x: float) -> str:
        return "met" if x <= SEARCH_GOAL_S else "NOT met"

    load = __import__("os").getloadavg()
    print(f"1-min load average {load[0]:.1f} at the end")
    print(f"{SEARCH_CANDIDATES:,}-candidate SiGeo search of {args.space} (projected from the mean per candidate):")
    print(f"  1 process x {args.search_threads} threads: {one_proc / 60:.1f} min   goal <=15 min: {verdict(one_proc)}")
    print(f"  2 processes x {args.threads} thread{'s' if args.threads > 1 else ''} (ideal split): {two_proc / 60:.1f} min"
          f"   goal <=15 min: {verdict(two_proc)}")
    if args.reference_path:
        before = SEARCH_CANDIDATES * float(np.mean(rows["sigeo_before"])) / 2
        print(f"  before the speed-ups, 2 processes x {args.threads} thread: {before / 60:.1f} min; "
              f"sigeo / sigeo_before {np.median(np.array(rows['sigeo']) / np.array(rows['sigeo_before'])):.2f} "
              f"(median); same scores bit for bit: {all(same_scores)} ({len(same_scores)} candidates)")


if __name__ == "__main__":
    main()
