"""recnas.study: the trial store every search and benchmark reads and writes, and its views.

- :class:`TrialStore`: the append-only, fsynced record of every measurement of an architecture,
  keyed by (architecture, measurement, settings identity, seed); :func:`digest` makes the identity,
  :func:`check_identity` is the one compatibility check.
- :class:`Study`: one strategy's proposals (``asked``) and their measurements (``trial``), the
  history a strategy reads (:meth:`Study.history`).
- :mod:`~recnas.study.evaluators`: ``evaluate(specs) -> values`` with cost accounting.
"""

from recnas.study.store import SCHEMA, StoreError, TrialStore, check_identity, convert_v1, diff_keys, digest
from recnas.study.study import Study, Trial

__all__ = ["TrialStore", "StoreError", "SCHEMA", "digest", "diff_keys", "check_identity", "convert_v1",
           "Study", "Trial"]
