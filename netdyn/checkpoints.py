"""Checkpoint files of runs trained elsewhere and the training step of each (docs/external.md).

Torch-free: the config reads the steps from the file names when the Snakefile is parsed; netdyn.external opens the
files.
"""

from __future__ import annotations

import csv
import glob
import os
import re
from pathlib import Path


class ExternalRunError(ValueError):
    """A checkpoint file or its description cannot be used; the message names the file."""


def checkpoint_files(location: str, *, step_pattern: str | None = None, steps_csv: str | None = None) -> dict[int, str]:
    """``{step: file}`` for a glob or a folder of checkpoints (``*.pt``, ``*.pth``, ``*.ckpt``)."""
    if os.path.isdir(location):
        files = [str(p) for p in sorted(Path(location).iterdir()) if p.suffix in (".pt", ".pth", ".ckpt")]
    else:
        files = sorted(glob.glob(location))
    if not files:
        raise ExternalRunError(f"{location}: no checkpoint files found")
    if steps_csv:
        with open(steps_csv, newline="") as handle:
            table = {os.path.basename(row["file"]): int(row["step"]) for row in csv.DictReader(handle)}
        unknown = [f for f in files if os.path.basename(f) not in table]
        if unknown:
            raise ExternalRunError(f"{steps_csv}: no step for checkpoint {unknown[0]}")
        steps = {table[os.path.basename(f)]: os.path.abspath(f) for f in files}
    else:
        pattern = re.compile(step_pattern or r"(\d+)(?!.*\d)")
        steps = {}
        for file in files:
            match = pattern.search(os.path.basename(file))
            if not match:
                raise ExternalRunError(f"{file}: no step number in the file name (pattern {pattern.pattern!r})")
            step = int(match.group(1))
            if step in steps:
                raise ExternalRunError(f"{file}: step {step} also belongs to {steps[step]}")
            steps[step] = os.path.abspath(file)
    return dict(sorted(steps.items()))
