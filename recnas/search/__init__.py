"""recnas.search: the search runner behind ``recnas search`` (and ``recnas demo``).

- :mod:`~recnas.search.config`: the pipeline file (:class:`PipelineConfig`, :func:`load_pipeline`).
- :mod:`~recnas.study`: the trial store every search reads and writes (``RUN_DIR/journal.jsonl``).
- :mod:`~recnas.search.strategies`: random search and regularized evolution (ask/tell, seeded).
- :mod:`~recnas.search.runner`: :func:`run_search` -- data, warm-up, the journalled loop, retrain,
  report, export, final training; the run-folder layout is documented there.
- :mod:`~recnas.search.report`, :mod:`~recnas.search.retrain`, :mod:`~recnas.search.final`: the
  stages after the loop.

Example::

    cfg = load_pipeline("pipelines/demo.yaml", ["search.budget=32", "output=runs/try"])
    result = run_search(cfg)            # one process, or every rank under torchrun
    result.best(3)                      # journal records, best score first
"""

from recnas.search.config import PipelineConfig, load_pipeline
from recnas.search.runner import SearchResult, read_journal, run_search

__all__ = ["PipelineConfig", "load_pipeline", "run_search", "SearchResult", "read_journal"]
