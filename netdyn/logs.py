"""Glue for the workflow scripts: send a job's output to its Snakemake log and fail with one clear line."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def logged(log_path: str) -> Iterator[None]:
    """Redirect stdout, stderr and warnings to ``log_path``; on error log the traceback and exit 1.

    The last line of the log (and of the job's stderr, which Snakemake shows) is the error message itself.
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
