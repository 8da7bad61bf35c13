"""Glue for the workflow scripts: send a job's output to its Snakemake log and fail with one clear line."""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str) -> Iterator[None]:
    """Redirect stdout, stderr and warnings to ``log_path``; on error log the traceback and exit 1.

    The last line of the log (and of the job's stderr, which Snakemake shows) is the error message itself. On the
    way out every live object is frozen (``gc.freeze``): the job's process is about to end, and the interpreter's
    final collection over torch's objects alone took 1.3 s of a 4.5 s torch job's start-up and exit on the 2-core
    machine (0.5 s for pandas and matplotlib), for nothing.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    real_stderr = sys.stderr
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, force=True)
        warnings.simplefilter("default")
        try:
            yield
        except Exception as error:  # report every failure the same way: traceback in the log, one line out
            traceback.print_exc(file=log)
            message = f"{type(error).__name__}: {error}"
            print(message, file=log)
            print(f"netdyn error (log: {log_path}): {message}", file=real_stderr)
            raise SystemExit(1) from None
        finally:
            gc.freeze()
