"""One GPU per job on a multi-GPU workstation (docs/cluster.md "Several GPUs in one machine").

Snakemake's ``--resources gpu=4`` caps how many GPU jobs run at once but does not say which device each gets, so
without help every job would use ``cuda:0``. A GPU job calls ``claim_gpu_slot`` before it touches CUDA: it takes the
first free slot (an exclusive ``flock`` on ``.snakemake/netdyn-gpu-slots/gpu<k>.lock``, held for the job's life and
released by the kernel however the job ends, SIGKILL included) and exports that device as ``CUDA_VISIBLE_DEVICES``.

The devices: ``NETDYN_GPUS`` (comma-separated ids, the override), else the ones ``CUDA_VISIBLE_DEVICES`` lists when it
lists several, else one per GPU the NVIDIA driver shows in /proc. With one device or none, under SLURM (which gives
each job its own GPUs and sets ``CUDA_VISIBLE_DEVICES`` itself) and for jobs that ask for no GPU nothing changes.
Light: no torch.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO, NamedTuple

SLOTS = Path(".snakemake") / "netdyn-gpu-slots"
DRIVER_GPUS = Path("/proc/driver/nvidia/gpus")


class GPUSlotError(RuntimeError):
    """Every GPU slot is held by another job: more GPU jobs run than there are devices."""


class Slot(NamedTuple):
    device: str  # what CUDA_VISIBLE_DEVICES was set to
    index: int  # which of the devices, from 0
    count: int  # how many devices the slots share
    handle: IO[str]  # the locked file; the lock lasts while it is open


def slot_devices(environ: MutableMapping[str, str]) -> list[str]:
    """The devices the slots share, by the rule in the module docstring."""
    if environ.get("NETDYN_GPUS", "").strip():
        return [device.strip() for device in environ["NETDYN_GPUS"].split(",") if device.strip()]
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device.strip() for device in visible.split(",") if device.strip() and device.strip() != "-1"]
    return [str(index) for index in range(len(list(DRIVER_GPUS.iterdir())))] if DRIVER_GPUS.is_dir() else []


def claim_gpu_slot(
    gpus_requested: int, environ: MutableMapping[str, str] | None = None, slots: Path = SLOTS
) -> Slot | None:
    """Give this job its own device (see the module docstring); None where nothing changes. Call it before CUDA is
    initialised, and keep the returned slot for as long as the job runs."""
    environ = os.environ if environ is None else environ
    if gpus_requested < 1 or "SLURM_JOB_ID" in environ:
        return None
    devices = slot_devices(environ)
    if len(devices) <= 1:
        return None
    slots.mkdir(parents=True, exist_ok=True)
    for index, device in enumerate(devices):
        handle = open(slots / f"gpu{index}.lock", "a+")  # noqa: SIM115 (held open: the lock lives with the file)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")  # for a human looking at who holds it
        handle.flush()
        environ["CUDA_VISIBLE_DEVICES"] = device
        return Slot(device, index, len(devices), handle)
    raise GPUSlotError(
        f"all {len(devices)} GPU slots ({', '.join(devices)}) are held by other jobs: run with --resources gpu="
        f"{len(devices)} at most, or list more devices in NETDYN_GPUS"
    )


def job_gpu_slot(resources: object, log=print) -> Slot | None:
    """``claim_gpu_slot`` for a Snakemake job with these ``resources`` (its ``gpu`` count), noting the slot in the
    job's log."""
    slot = claim_gpu_slot(int(getattr(resources, "gpu", 0) or 0))
    if slot is not None:
        log(f"GPU slot {slot.index + 1} of {slot.count}: CUDA_VISIBLE_DEVICES={slot.device}")
    return slot
