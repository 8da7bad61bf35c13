"""The device rule (netdyn.devices): a GPU job never trains on the CPU by surprise; CPU machines still work."""

from __future__ import annotations

import pytest
import torch

from netdyn.devices import GPU_VARIABLES, DeviceError, assigned_gpus, resolve_device
from netdyn.stages.common import analysis_device
from netdyn.train import RunPaths, train_run
from tests.conftest import tiny_spec


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environ", "given"),
    [
        ({}, None),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
        ({"SLURM_GPUS_ON_NODE": "0"}, None),
        ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0"),
        ({"CUDA_VISIBLE_DEVICES": "GPU-5f2c"}, "CUDA_VISIBLE_DEVICES=GPU-5f2c"),
        ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
        ({"SLURM_GPUS_ON_NODE": "1"}, "SLURM_GPUS_ON_NODE=1"),
    ],
)
def test_which_environments_mean_a_gpu_was_given(environ, given):
    assert assigned_gpus(environ) == given


def test_auto_uses_the_cpu_with_a_warning_only_when_no_gpu_was_given(no_cuda):
    with pytest.warns(UserWarning, match="computing on the CPU"):
        assert resolve_device("auto", {}) == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"given a GPU \(SLURM_JOB_GPUS=1\) but torch cannot use CUDA") as error:
        resolve_device("auto", {"SLURM_JOB_GPUS": "1"})
    assert f"torch {torch.__version__}" in str(error.value) and "set 'cpu'" in str(error.value)
    assert resolve_device("cpu", {"CUDA_VISIBLE_DEVICES": "0"}) == torch.device("cpu")  # the CPU on purpose


def test_cuda_fails_at_once_saying_why(no_cuda):
    with pytest.raises(DeviceError, match="train.device: 'cuda' was requested but torch cannot use CUDA: ") as error:
        resolve_device("cuda", {})
    assert "\n" not in str(error.value)


def test_a_usable_gpu_is_used_whatever_auto_or_cuda_says(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", {}) == resolve_device("cuda", {}) == torch.device("cuda")


def test_a_training_job_given_an_unusable_gpu_stops_before_training(no_cuda, monkeypatch, synthetic_h5, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    spec = tiny_spec(device="auto")
    paths = RunPaths(tmp_path / "snapshots", tmp_path / "history.csv", tmp_path / "run.json")
    with pytest.raises(DeviceError, match="CUDA_VISIBLE_DEVICES=0"):
        train_run(spec, synthetic_h5, *paths, log=lambda _: None)
    assert not paths.run_json.exists() and not paths.snapshots.exists()
    with pytest.raises(DeviceError, match="analysis device: 'auto'"):
        analysis_device({"device": "auto"})
    assert analysis_device({"device": "cpu"}) == torch.device("cpu")  # a run trained on the CPU on purpose
