"""``netdyn analyze`` as a new user meets it: every path-taking flag that cannot work is named in one line with a
non-zero exit and nothing written, and a failing job ends the output with that job's own error and its log."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netdyn.cli import failed_jobs, main
from tests.conftest import ROOT


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    np.savez(data, x_train=rng.normal(size=(60, 4)).astype(np.float32), y_train=rng.integers(0, 2, 60),
             x_test=rng.normal(size=(20, 4)).astype(np.float32), y_test=rng.integers(0, 2, 20))  # fmt: skip
    checkpoints = tmp_path / "ckpts"
    checkpoints.mkdir()
    torch.save(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)), checkpoints / "ckpt_0.pt")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "state").mkdir()
    torch.save(
        nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict(), tmp_path / "state" / "ckpt_0.pt"
    )
    arrays = dict(np.load(data))
    np.savez(tmp_path / "xy.npz", x=arrays["x_train"], y=arrays["y_train"])  # the names a user might pick
    np.savez(tmp_path / "rows.npz", **{**arrays, "y_train": arrays["y_train"][:59]})
    np.savez(tmp_path / "labels.npz", **{**arrays, "y_test": arrays["y_test"].astype(np.float32)})
    np.savez(
        tmp_path / "wide.npz", **{**arrays, "x_train": rng.normal(size=(60, 5)), "x_test": rng.normal(size=(20, 5))}
    )
    np.savez(tmp_path / "classes.npz", **{**arrays, "y_test": np.arange(20) % 3})
    (tmp_path / "build.py").write_text(
        "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Linear(4, 3))\n"
    )
    return {"data": data, "checkpoints": checkpoints, "file": tmp_path / "a_file", "root": tmp_path}


def arguments(inputs: dict[str, Path], **changed: str) -> list[str]:
    flags = {"--snapshots": str(inputs["checkpoints"]), "--data": str(inputs["data"]),
             "--out": str(inputs["root"] / "out")} | changed  # fmt: skip
    return ["analyze", *[part for flag, value in flags.items() for part in (flag, value)]]


BAD_FLAGS = [
    ({"--data": "/missing.npz"}, "--data: '/missing.npz' does not exist and is not a dataset name"),
    ({"--data": "{root}"}, "--data: '{root}' is not a file"),
    ({"--snapshots": "/missing/folder"}, "--snapshots: '/missing/folder' does not exist"),
    ({"--snapshots": "{root}/ckpts/*.pth"}, "--snapshots: the pattern '{root}/ckpts/*.pth' matches no file"),
    ({"--analysis": "/missing.yaml"}, "--analysis: '/missing.yaml' does not exist"),
    ({"--analysis": "{root}/ckpts"}, "--analysis: '{root}/ckpts' is not a file"),
    ({"--analysis": "{root}/a_file"}, "--analysis: '{root}/a_file' does not hold a mapping"),
    ({"--model-yaml": "/missing.yaml"}, "--model-yaml: '/missing.yaml' does not exist"),
    ({"--out": "{root}/a_file"}, "--out: '{root}/a_file' exists and is not a folder"),
    ({"--analyses": "rpd,magic"}, "--analyses: unknown analysis 'magic'"),
    ({"--data": "{root}/xy.npz"}, "--data: {root}/xy.npz: missing array(s) x_train, y_train, x_test, y_test"),
    ({"--data": "{root}/rows.npz"}, "--data: {root}/rows.npz: x_train has 60 rows but y_train has 59"),
    ({"--data": "{root}/labels.npz"}, "--data: {root}/labels.npz: y_test must hold integer class labels 0..C-1"),
    ({"--data": "{root}/a_file"}, "--data: {root}/a_file: not a readable .npz or HDF5 file"),
    ({"--model": "/missing.py:build"}, "--model: '/missing.py' does not exist"),
    ({"--model": "{root}/a_file"}, "--model: '{root}/a_file' is not FILE.py:FUNCTION"),
    ({"--data": "{root}/wide.npz"}, "{root}/ckpts/ckpt_0.pt: the model takes 4 inputs, the data has 5"),
    ({"--layers": "1"}, "{root}/ckpts/ckpt_0.pt: analysis.layers chooses layers of a network analysed through"),
    ({"--data": "{root}/classes.npz"}, "{root}/ckpts/ckpt_0.pt: the model has 2 outputs, the data 3 classes"),
    (
        {"--model": "{root}/build.py:build", "--snapshots": "{root}/state"},
        "{root}/state/ckpt_0.pt: the state dict does",
    ),
]


@pytest.mark.parametrize(
    ("changed", "message"), BAD_FLAGS, ids=[f"{m[1].split(':')[0]}-{i}" for i, m in enumerate(BAD_FLAGS)]
)
def test_a_flag_that_cannot_work_is_named_in_one_line_and_nothing_is_written(inputs, capsys, changed, message):
    root = str(inputs["root"])
    changed = {flag: value.format(root=root) for flag, value in changed.items()}
    assert main(arguments(inputs, **changed)) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"netdyn analyze: {message.format(root=root)}"), lines
    assert not (inputs["root"] / "out" / "config.yaml").exists()


def test_a_failing_job_ends_the_output_with_its_own_error_and_log(inputs):
    (inputs["checkpoints"] / "ckpt_5.pt").write_bytes(b"not a checkpoint")
    out = inputs["root"] / "out"
    command = [sys.executable, "-m", "netdyn.cli", *arguments(inputs), "--analyses", "rpd", "--cores", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()
    assert last[-1].startswith("netdyn analyze: failed (Snakemake exit") and str(out / "snakemake.log") in last[-1]
    assert any("job import_run failed; the end of its log" in line for line in last)
    assert any("not a readable PyTorch checkpoint" in line and "ckpt_5.pt" in line for line in last)
    assert "WorkflowError" not in result.stdout + result.stderr  # Snakemake's own lines went to its log
    assert (
        "WorkflowError" in (out / "snakemake.log").read_text() or "Error in rule" in (out / "snakemake.log").read_text()
    )


def test_every_path_may_be_relative_to_the_callers_folder(inputs):
    (inputs["root"] / "settings.yaml").write_text("samples: 30\n")
    command = [sys.executable, "-m", "netdyn.cli", "analyze", "--snapshots", "ckpts", "--data", "mine.npz", "--out",
               "out", "--analysis", "settings.yaml", "--analyses", "rpd", "--cores", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=inputs["root"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (inputs["root"] / "out" / "results" / "runs" / "mine" / "run" / "rpd.csv").exists()
    assert not (inputs["root"] / "out" / "out").exists()


def test_failed_jobs_reads_snakemake_error_blocks():
    output = (
        "Error in rule import_run:\n    message: x\n    jobid: 1\n    log: results/logs/import_run/mine/run.log (check"
        " log file(s) for error details)\n\nError in rule collect:\n    jobid: 3\n"
    )
    assert failed_jobs(output) == [("import_run", "results/logs/import_run/mine/run.log"), ("collect", None)]
