"""Independent jobs of a benchmark summary (the predictor sweep's splits, the regret repeats) spread
over worker processes, with the same results as in one process."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["first_here_rest_in_workers"]


def _with_threads(threads: int, fn: Callable[..., Any], *args: Any) -> Any:
    import torch

    torch.set_num_threads(threads)
    return fn(*args)


def first_here_rest_in_workers(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[Any]:
    """``[fn(*job) for job in jobs]``, in order. With ``workers > 1`` the first job runs in this
    process -- so what ``fn`` makes once and caches on first use (EmProx's autoencoder) is made once,
    not by every worker at the same time -- and the others in ``min(workers, len(jobs) - 1)``
    ``joblib`` (loky) worker processes, each with this process's torch thread count. ``fn`` and the
    jobs must be picklable (cloudpickle); each job must depend only on its arguments."""
    if not jobs:
        return []
    done = [fn(*jobs[0])]
    rest = list(jobs[1:])
    if workers > 1 and rest:
        import torch
        from joblib import Parallel, delayed

        threads = torch.get_num_threads()
        done += Parallel(n_jobs=min(workers, len(rest)), backend="loky")(
            delayed(_with_threads)(threads, fn, *job) for job in rest)
    else:
        done += [fn(*job) for job in rest]
    return done
