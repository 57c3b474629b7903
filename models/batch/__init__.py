"""Batch triage: predict every image of a folder, CSV, zip, video or DICOM directory, rank them,
explain the top ones; resumable, and sharded under ``torchrun``.

Command line: ``python -m models.batch INPUT --out DIR`` (see :mod:`models.batch.__main__`).
Python API, for callers such as a worklist page with a large upload:

- :func:`open_source` (``location``: a path, or (name, bytes) uploads held in memory);
- :func:`iter_results`: one result row (a dict) per image, in input order, as a stream;
- :func:`write_results` with :func:`result_columns`: those rows as ``results.csv``;
- :func:`run_batch`: the command line's resumable run into a folder, with the summary;
- :func:`run_in_memory`: the same for uploads, nothing written to disk (the worklist's road for
  a large upload).

The names load on first use (PEP 562), so importing this package, and ``--help``, load no torch.
"""

from __future__ import annotations

from models.lazy import lazy_attributes

__all__ = [
    "BatchOptions",
    "InputError",
    "RunConflict",
    "RunReport",
    "Source",
    "iter_results",
    "open_source",
    "rank_key",
    "result_columns",
    "run_batch",
    "run_in_memory",
    "write_results",
]

_HOME = {"BatchOptions": "pipeline", "iter_results": "pipeline", "rank_key": "pipeline",
         "result_columns": "pipeline", "write_results": "pipeline", "InputError": "sources",
         "Source": "sources", "open_source": "sources", "RunConflict": "run",
         "RunReport": "run", "run_batch": "run", "run_in_memory": "run"}


__getattr__ = lazy_attributes(__name__, _HOME)
