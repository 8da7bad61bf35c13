"""benchmarks/gpu_window.sh at tiny sizes on the CPU: every step runs and its one folder holds what it measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_the_gpu_window_script_runs_its_steps_at_tiny_sizes(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "WORKDIR": str(tmp_path / "work"), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_window.sh"), str(out), "--smoke"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    log = out / "workflow.log"
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:] + (
        log.read_text()[-3000:] if log.exists() else ""
    )
    files = {path.name for path in out.iterdir()}
    assert {"machine.txt", "bench.json", "bench.txt", "plan.txt", "summary.json", "summary.md", "workflow.log"} <= files
    assert len(files) <= 8  # what the device tool brings back from one folder
    assert "benchmark rows: exit 0" in (out / "machine.txt").read_text()
    assert all(row["agree"] for row in json.loads((out / "bench.json").read_text())["rows"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["returncode"] == 0 and summary["runs_finished"] == summary["runs"] == 2
    assert summary["jobs"]["train"]["jobs"] == 1 and summary["jobs"]["analyse_rpd"]["jobs"] == 1  # one stack group
    assert summary["planned_s"]["h200"] > 0 and "predicted on this CPU" in (out / "plan.txt").read_text()
