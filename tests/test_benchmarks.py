"""The benchmark harness at smoke sizes: every row runs, both sides agree, and the timings are sane."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import run as bench
from tests.conftest import ROOT


def test_smoke_run_every_row_agrees_with_positive_ratio(tmp_path):
    output = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(output.read_text())
    rows = results["rows"]
    expected = {
        "weight basin",
        "input basin",
        "RPD of one layer",
        "LP pruning of one layer",
        "activation dump of one snapshot",
    }
    assert sum(r["workload"].startswith("stacked training, 2 seeds") for r in rows) == 1
    assert expected <= {r["workload"] for r in rows}
    assert sum(r["workload"].startswith("train ") for r in rows) == 2
    for r in rows:
        assert r["agree"] is True, r
        assert r["ratio"] > 0 and math.isfinite(r["ratio"]), r
        assert len(r["baseline_times"]) >= 3 and len(r["netdyn_times"]) >= 3
        assert r["baseline_s"] == sorted(r["baseline_times"])[1]  # median of three
    assert results["matmul_peak_flops"] > 0
    assert "workload" in result.stdout and "ratio" in result.stdout  # the table


def test_rankdata_baseline_matches_hand_ranked_case():
    # Two neurons, two classes, four samples; neuron 0 reads out +/-, neuron 1 reads out 0 for class 1.
    h = np.array([[1.0, 3.0], [2.0, 3.0], [3.0, 1.0], [4.0, 2.0]], dtype=np.float32)
    readout = np.array([[1.0, -1.0], [1.0, 0.0]])
    labels = np.array([0, 1, 0, 1])
    # Descending ranks in the label's column. Neuron 0: class 0 column h = 1,2,3,4 -> sample 0 rank 4, sample 2
    # rank 2; class 1 column -h = -1..-4 -> sample 1 rank 2, sample 3 rank 4. Neuron 1: class 0 column
    # h = 3,3,1,2 -> sample 0 rank 1.5 (tie), sample 2 rank 4; class 1 column all zero -> every rank 2.5.
    ranks = np.array([4, 2, 2, 4, 1.5, 2.5, 4, 2.5])
    rho = (ranks - 1) / 3
    expected = np.histogram(rho, bins=bench.rpd.bin_edges(4), density=True)[0]
    np.testing.assert_allclose(bench.rpd_rankdata(h, readout, labels, bins=4), expected)
    np.testing.assert_allclose(bench.rpd.rpd(h, readout, labels, bins=4)[1], expected)


def test_loops_are_the_same_computation_as_netdyn():
    torch.manual_seed(0)
    sizes = {"depth": 2, "width": 16, "samples": 50, "amplitudes": 3, "draws": 2}
    model, x, y = bench.basin_setup(sizes)
    assert float((model(x).argmax(1) == y).double().mean()) == 1.0
    noise = bench.basins.draw_weight_noise(model, 2, torch.Generator().manual_seed(0))
    # Zero amplitude: both sides give the clean accuracy 1; a huge one destroys it for both.
    loop = bench.weight_basin_loop(model, x, y, [0.0, 1e3], noise)
    assert torch.all(loop[0] == 1.0) and torch.all(loop[1] < 0.9)
    ours = bench.basins.weight_basin_accuracies(model, x, y, [0.0, 1e3], noise)
    assert torch.allclose(loop, ours, atol=2 / 50)
    assert bench.training_flops({"depth": 1, "width": 3}, batch=2, steps=1) == 3 * (
        2 * 2 * 784 * 3 + 2 * 2 * 3 * 10
    ) - (2 * 2 * 784 * 3)


def test_gpu_rows_are_refused_clearly_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: `python -m benchmarks.run --device cuda` runs for real")
    with pytest.raises(SystemExit, match="--device cuda: no CUDA GPU is visible"):
        bench.run(smoke=True, device="cuda", log=lambda _: None)


def test_job_times_split_each_job_into_start_up_body_and_exit(tmp_path):
    from benchmarks import jobs

    results = tmp_path / "results"
    cases = {"train/exp/p0.6": (5.0, 3.0, 0.5), "stacks/analyse_rpd__exp__stack1": (2.0, 1.25, 0.25)}
    for job, (seconds, startup, exit_s) in cases.items():
        log = results / "logs" / f"{job}.log"
        log.parent.mkdir(parents=True)
        log.write_text("working\n")
        (birth,) = jobs.birth_times([log])
        if birth is None:
            pytest.skip("this filesystem records no file birth times")
        body = seconds - startup - exit_s
        os.utime(log, (birth + body, birth + body))
        benchmark = results / "benchmarks" / f"{job}.tsv"
        benchmark.parent.mkdir(parents=True, exist_ok=True)
        benchmark.write_text(f"s\th:m:s\n{seconds}\t0:00:05\n")
        os.utime(benchmark, (birth + body + exit_s, birth + body + exit_s))
    rows = {row["job"]: row for row in jobs.job_times(results)}
    assert set(rows) == set(cases)
    assert rows["stacks/analyse_rpd__exp__stack1"]["rule"] == "analyse_rpd"
    for job, (seconds, startup, exit_s) in cases.items():
        assert rows[job]["s"] == seconds
        assert rows[job]["startup_s"] == pytest.approx(startup, abs=1e-3)
        assert rows[job]["exit_s"] == pytest.approx(exit_s, abs=1e-3)
    total = jobs.summary(list(rows.values()))
    assert total["startup_share"] == pytest.approx(4.25 / 7.0, abs=1e-3)
    assert "start-up share 60.7%" in jobs.render(list(rows.values()))


def test_cnn_stacking_benchmark_compares_the_same_nets():
    # The grouped module must be the K nets it is timed against, member for member, or its ratio means nothing.
    from benchmarks.cnn_stacking import GroupedCNN, conv_layer_times, step_time
    from netdyn.config import CNN_DEFAULTS
    from netdyn.models import build_cnn

    torch.manual_seed(0)
    spec = {**CNN_DEFAULTS, "depth": 3, "width": 4, "head_widths": [8], "batchnorm": True}
    members = [build_cnn(spec) for _ in range(3)]
    grouped = GroupedCNN(spec, 3).copy_members(members)
    x = torch.randn(16, 1, 28, 28)
    out = grouped(x)
    torch.testing.assert_close(out, torch.stack([member(x) for member in members]), rtol=1e-4, atol=1e-4)
    out[1].sum().backward()  # member 1's output reaches only member 1's weights
    conv = grouped.body[0].weight.grad
    assert conv[4:8].abs().sum() > 0 and conv[:4].abs().sum() == 0 and conv[8:].abs().sum() == 0
    assert grouped.w1.grad[1].abs().sum() > 0 and grouped.w1.grad[[0, 2]].abs().sum() == 0
    assert step_time([grouped], True, x, torch.randint(0, 10, (16,)), steps=1) > 0
    assert all(seconds > 0 for seconds in conv_layer_times(members=2, width=2, batch=4, steps=1))
