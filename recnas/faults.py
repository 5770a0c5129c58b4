"""Deterministic fault points, so tests can kill a process at a chosen place instead of racing a clock.

Code that writes durable work calls :func:`fault_point` right after each unit of work is safely
recorded (a trial appended, a checkpoint written, a ground-truth row saved). When the environment
variable ``RECNAS_FAULT`` is ``NAME:N`` the process kills itself with ``SIGKILL`` (no cleanup, no
``finally`` blocks: the same as ``kill -9`` or an out-of-memory kill) the N-th time point ``NAME``
is reached. Several points may be armed at once, comma-separated. Unset, a fault point costs one
dictionary lookup.

Example (a shell)::

    RECNAS_FAULT=search.trial:5 recnas search pipelines/demo.yaml   # dies after the 5th journalled trial

Points in the code: ``search.trial`` (a search record appended), ``warmup.checkpoint`` (a warm-up
checkpoint saved), ``train.checkpoint`` (a training checkpoint saved), ``bench.row`` (a ground-truth
row saved), ``oracle.run`` (a train-from-scratch run finished), ``study.query`` (a strategy's query of
another evaluator recorded), ``final.model`` (a model of the final training finished), ``prepare.chunk`` (a chunk of rows written
to ``recnas data prepare``'s staging folder), ``prepare.publish`` (one item of a prepared dataset
moved from the staging folder into the output folder), ``bench.score`` (an estimator's score of one
architecture stored by ``recnas bench compare``), and the supernet split's (``recnas.lid.split``):
``split.measure`` (one choice measured and journalled), ``split.partition`` (a sub-supernet's split
journalled), ``split.checkpoint`` (a fine-tuning checkpoint written), ``split.finetuned`` (a
sub-supernet's fine-tuning finished and saved).
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point", "ENV"]

ENV = "RECNAS_FAULT"
_hits: dict[str, int] = {}


def _armed() -> dict[str, int]:
    spec = os.environ.get(ENV, "")
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, n = part.rpartition(":")
        if not sep or not name or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV}={spec!r}: expected NAME:N[,NAME:N...] with N >= 1, got {part!r}")
        out[name] = int(n)
    return out


def fault_point(name: str) -> None:
    """Counts a pass through point ``name``; SIGKILLs this process on the armed pass."""
    if ENV not in os.environ:
        return
    n = _armed().get(name)
    if n is None:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == n:
        os.kill(os.getpid(), signal.SIGKILL)
