"""Decoder processes for the batch and worklist roads: spawned, without the parent's main script.

This module imports nothing heavy on purpose: a spawned child unpickles its process object, so
it imports the module that defines the process class. Defined next to the pipeline, that pulled
torch and the models into every decoder (about 700 MB of resident memory each, and seconds of
start-up); decoding needs neither.
"""

from __future__ import annotations

import multiprocessing.context
import sys
import threading
import types
from typing import Any

__all__ = ["SpawnWithoutMain", "WorkerProcess"]


class WorkerProcess(multiprocessing.context.SpawnProcess):
    """A spawned process that does not run the parent's main script again.

    Spawning, not forking: a forked copy of a process whose threads hold locks (torch's pools,
    the image loader's) can deadlock. A spawned child normally re-runs the parent's ``__main__``
    file; under Streamlit that is the last page script, which must not run in a decoder, and
    decoding needs nothing from it. So the child is started while ``__main__`` is an empty stand-in.
    """

    _lock = threading.Lock()

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - the name multiprocessing calls
        with WorkerProcess._lock:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                return multiprocessing.context.SpawnProcess._Popen(process_obj)
            finally:
                sys.modules["__main__"] = main


class SpawnWithoutMain(multiprocessing.context.SpawnContext):
    """A spawn context whose processes are :class:`WorkerProcess`."""

    Process = WorkerProcess
