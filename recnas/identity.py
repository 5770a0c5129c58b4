"""The one identity check: whether stored work was made with the settings asked for now.

Every place that resumes or reuses finished work (a search's trial store, a training run's
checkpoints, a warm-up, a benchmark's ground truth, a reused supernet) compares what it stored
with what it is asked now through :func:`check_identity`, and every measurement in the trial store
is keyed by :func:`digest` of its settings. The error names the file, each differing dotted key with
both values, and what to do.

Example::

    >>> check_identity({"seed": 0, "train": {"lr": 0.1}}, {"seed": 0, "train": {"lr": 0.2}}, "run.json")
    Traceback (most recent call last):
    ...
    ValueError: run.json: was made with different settings (differs at train.lr: saved 0.1, now 0.2); use a new output folder, or the same settings to continue
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["canon", "digest", "diff_keys", "check_identity", "without_earlier"]


def canon(obj: Any) -> Any:
    """``obj`` as plain JSON data (tuples -> lists, keys sorted, others by ``str``)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def digest(settings: Any) -> str:
    """The identity of some settings: 16 hex digits of SHA-256 of their canonical JSON."""
    return hashlib.sha256(json.dumps(canon(settings), sort_keys=True).encode()).hexdigest()[:16]


def without_earlier(settings: Mapping[str, Any], earlier: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without the keys that were added after work was first stored while they hold
    ``earlier[key]``, the value that reproduces that work: what an identity keeps, so that an option
    added later, at its old behaviour, leaves every earlier key, signature and digest unchanged.

    Every identity of the project (the data's, a recipe's, a benchmark's signature, an estimator's
    parameters) passes its later fields through here.

    Example::

        >>> without_earlier({"lr": 0.1, "schedule": "constant"}, {"schedule": "constant"})
        {'lr': 0.1}
        >>> without_earlier({"lr": 0.1, "schedule": "cosine"}, {"schedule": "constant"})
        {'lr': 0.1, 'schedule': 'cosine'}
    """
    return {k: v for k, v in settings.items() if not (k in earlier and v == earlier[k])}


def diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted paths where two JSON-like trees differ (``<root>`` if they differ at the top)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "<root>"]


def _get(tree: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def _short(v: Any, n: int = 60) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


def check_identity(stored: Any, current: Any, where: str, *, what: str = "was made with different settings",
                   hint: str = "use a new output folder, or the same settings to continue",
                   ignore: Iterable[str] = (), error: type[Exception] = ValueError) -> None:
    """Raises ``error`` if ``stored`` and ``current`` differ outside the top-level keys ``ignore``.

    The message: ``"{where}: {what} (differs at KEY: saved V, now W; ...); {hint}"``.
    """
    a, b = canon(stored), canon(current)
    skip = set(ignore)
    diff = [k for k in diff_keys(a, b) if k.split(".")[0] not in skip]
    if diff:
        shown = "; ".join(f"{k}: saved {_short(_get(a, k))}, now {_short(_get(b, k))}" if k != "<root>" else k
                          for k in diff[:6])
        more = f"; and {len(diff) - 6} more" if len(diff) > 6 else ""
        raise error(f"{where}: {what} (differs at {shown}{more}); {hint}")
