"""One GPU per job (netdyn.gpus), on the CPU with a faked device list: concurrent jobs get distinct slots, a killed
job's slot comes free, and nothing changes with one device, under SLURM, or for a job that asks for no GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netdyn.gpus import GPUSlotError, claim_gpu_slot, slot_devices
from tests.conftest import ROOT

HOLDER = """
import os, sys, time
from pathlib import Path
from netdyn.gpus import claim_gpu_slot
slot = claim_gpu_slot(1, slots=Path(sys.argv[1]))
print(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"), flush=True)
time.sleep(60)
"""


def holder(slots: Path, environ: dict[str, str]) -> subprocess.Popen:
    """A stand-in GPU job: claims a slot, prints its CUDA_VISIBLE_DEVICES, and holds the slot until killed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **environ}
    env.pop("SLURM_JOB_ID", None)
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(slots)], env=env, stdout=subprocess.PIPE, text=True)


def test_concurrent_jobs_get_distinct_slots_and_a_killed_jobs_slot_comes_free(tmp_path):
    slots = tmp_path / "slots"
    jobs = [holder(slots, {"NETDYN_GPUS": "0,1,2"}) for _ in range(3)]
    try:
        devices = [job.stdout.readline().strip() for job in jobs]
        assert sorted(devices) == ["0", "1", "2"]
        with pytest.raises(GPUSlotError, match=r"all 3 GPU slots \(0, 1, 2\) are held"):
            claim_gpu_slot(1, {"NETDYN_GPUS": "0,1,2"}, slots)
        os.kill(jobs[1].pid, signal.SIGKILL)  # a job killed outright: the kernel drops its lock
        jobs[1].wait()
        environ, slot, deadline = {"NETDYN_GPUS": "0,1,2"}, None, time.monotonic() + 10
        while slot is None and time.monotonic() < deadline:
            try:
                slot = claim_gpu_slot(1, environ, slots)
            except GPUSlotError:
                time.sleep(0.05)
        assert slot is not None and environ["CUDA_VISIBLE_DEVICES"] == slot.device == devices[1]
    finally:
        for job in jobs:
            job.kill()
            job.wait()


@pytest.mark.parametrize(
    ("requested", "environ"),
    [
        (1, {"NETDYN_GPUS": "0"}),  # one device: it is the default device already
        (1, {"CUDA_VISIBLE_DEVICES": "3"}),  # the user chose one device
        (1, {"NETDYN_GPUS": "0,1", "SLURM_JOB_ID": "42"}),  # SLURM sets CUDA_VISIBLE_DEVICES per job itself
        (0, {"NETDYN_GPUS": "0,1"}),  # a job that asked for no GPU
    ],
)
def test_nothing_changes_where_there_is_no_choice_to_make(tmp_path, requested, environ):
    before = dict(environ)
    assert claim_gpu_slot(requested, environ, tmp_path / "slots") is None
    assert environ == before and not (tmp_path / "slots").exists()


def test_which_devices_the_slots_share():
    assert slot_devices({"NETDYN_GPUS": "2, 3", "CUDA_VISIBLE_DEVICES": "0,1"}) == ["2", "3"]  # the override first
    assert slot_devices({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}) == ["GPU-a", "GPU-b"]
    assert slot_devices({"CUDA_VISIBLE_DEVICES": ""}) == [] and slot_devices({"CUDA_VISIBLE_DEVICES": "-1"}) == []
