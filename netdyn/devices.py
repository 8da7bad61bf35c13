"""Which device a job computes on, and why it never trains on the CPU by surprise (docs/cluster.md "Devices").

``train.device``: ``cpu``; ``cuda`` (fails at once, saying why, when torch cannot use CUDA); ``auto`` (CUDA when
torch can use it, else the CPU with a warning, except when the job was given a GPU: ``CUDA_VISIBLE_DEVICES`` names
one, or SLURM says it allocated GPUs; then torch being unable to use it is an error, not a days-long CPU run). A
run's analyses run on the CPU when it trained with ``cpu`` and follow ``auto``'s rule otherwise
(netdyn.stages.common.analysis_device).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import torch

# Variables that say a GPU was given to this job, and the values that mean "none".
GPU_VARIABLES = {
    "CUDA_VISIBLE_DEVICES": ("", "-1", "NoDevFiles"),
    "SLURM_JOB_GPUS": ("",),
    "SLURM_STEP_GPUS": ("",),
    "SLURM_GPUS_ON_NODE": ("", "0"),
}


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says why and what to set instead."""


def assigned_gpus(environ: Mapping[str, str] | None = None) -> str | None:
    """``NAME=value`` of the first variable saying this job was given a GPU, or None."""
    environ = os.environ if environ is None else environ
    for name, none in GPU_VARIABLES.items():
        value = environ.get(name)
        if value is not None and value.strip() not in none:
            return f"{name}={value.strip()}"
    return None


def cuda_problem() -> str:
    """Why torch cannot use CUDA here, in its own words where it has them, with the build it is."""
    build = f"torch {torch.__version__}, " + (
        f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    )
    try:
        torch.cuda.init()
    except Exception as error:  # torch's reason: no driver, a driver too old for this build, no device
        return f"{str(error).strip().splitlines()[0]} ({build})"
    return f"torch.cuda.is_available() is False ({build})"


def resolve_device(requested: str, environ: Mapping[str, str] | None = None, key: str = "train.device") -> torch.device:
    """The device for ``requested`` (``cpu``, ``cuda``, ``auto``; config key ``key``), by the rules above."""
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda":
        raise DeviceError(f"{key}: 'cuda' was requested but torch cannot use CUDA: {cuda_problem()}; set 'cpu'")
    given = assigned_gpus(environ)
    if given:
        raise DeviceError(
            f"{key}: 'auto', and this job was given a GPU ({given}) but torch cannot use CUDA: {cuda_problem()}. "
            "Fix the driver or the torch build, or set 'cpu' to train on the CPU on purpose"
        )
    warnings.warn(f"{key} is 'auto' and no CUDA GPU is visible: computing on the CPU", stacklevel=2)
    return torch.device("cpu")
