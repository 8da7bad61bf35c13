"""Benchmarks of netdyn against conventional baselines, each timed in the same process on the same machine.

Every row is one workload run at equal work by both sides: first both sides are checked to give the same answer
(on identical inputs: the same batches, the same noise, the same data), then each side is timed ``repeats`` times
and the median is kept. The ratio is baseline time / netdyn time (a speed-up; > 1 means netdyn is faster).

    python -m benchmarks.run                # full sizes: benchmarks/results.json and a table
    python -m benchmarks.run --smoke        # tiny sizes, a few seconds (the test in tests/test_benchmarks.py)
    python -m benchmarks.run --preset       # also the quick preset end to end and a no-op rerun (~10+ minutes)

Both sides use ``threads`` threads (default 1): torch's and the BLAS/OpenMP pools numpy, scipy and scikit-learn
use (threadpoolctl), so the ratios compare the code, not the cores.
``--device cuda`` runs the training and basin rows (and the matmul peak) on the GPU instead: both sides on it, the
conventional loop moving each batch there as such loops do; the other rows stay on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from PIL import Image
from threadpoolctl import threadpool_limits
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.jobs import job_times
from benchmarks.jobs import summary as job_summary
from netdyn import activations, atomic, basins, hessian, pruning, rpd
from netdyn.config import MODEL_DEFAULTS, TRAIN_DEFAULTS
from netdyn.evaluate import loss_value
from netdyn.models import build
from netdyn.stacked import train_group
from netdyn.train import RunPaths, batch_indices, make_optimizer, train_run

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"
WORKFLOW_PARTS = ("Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "envs", "netdyn", "report")

# Workload sizes. FULL follows the issue; SMOKE keeps every code path at tiny sizes (a few seconds in all).
FULL: dict[str, Any] = {
    "repeats": 3,
    "grok": {"n": 1000, "steps": 200, "batch": 200},
    "wide": {"n": 4000, "steps": 200, "batch": 128, "width": 1024},
    "basin": {"depth": 8, "width": 256, "samples": 2000, "amplitudes": 20, "draws": 5},
    "rpd": {"samples": 10_000, "width": 1024},
    "lp": {"samples": 10_000, "width": 1024, "test": 2000},
    "dump": {"samples": 10_000, "depth": 4, "width": 1024},
    "stack": {"n": 4000, "steps": 500, "batch": 128, "depth": 8, "width": 64, "members": 8},
    "hessian": {"samples": 1000, "depth": 4, "width": 256, "probes": 64},
    "conv": {
        "samples": 10_000,
        "channels": 64,
        "basin_samples": 500,
        "amplitudes": 20,
        "noise_repeats": 2,
        "batch": 256,
    },  # fmt: skip
    "peak_n": 2048,
}
SMOKE: dict[str, Any] = {
    "repeats": 3,
    "grok": {"n": 200, "steps": 6, "batch": 20},
    "wide": {"n": 200, "steps": 6, "batch": 16, "width": 64},
    "basin": {"depth": 2, "width": 32, "samples": 100, "amplitudes": 4, "draws": 2},
    "rpd": {"samples": 300, "width": 16},
    "lp": {"samples": 400, "width": 16, "test": 100},
    "dump": {"samples": 200, "depth": 2, "width": 32},
    "stack": {"n": 200, "steps": 6, "batch": 16, "depth": 2, "width": 16, "members": 2},
    "hessian": {"samples": 100, "depth": 2, "width": 16, "probes": 8},
    "conv": {"samples": 300, "channels": 8, "basin_samples": 50, "amplitudes": 4, "noise_repeats": 2, "batch": 8},
    "peak_n": 256,
}
# Largest weight difference after 5 steps on the same batches at which the two training loops agree. On the CPU both
# run the same kernels in the same order. On a GPU they do not (the baseline converts images on the CPU, netdyn on the
# device), and Adam's normalised steps can turn a rounding difference into up to lr = 1e-3 a step: the first H200
# measured 1.8e-5 on the grokking net (benchmarks/gpu/README.md); 1e-4 is a tenth of one step.
SAME_BATCHES_TOLERANCE = {"cpu": 1e-5, "cuda": 1e-4}
GROK_MODEL = {"depth": 2, "width": 200, "activation": "relu", "alpha": 7.0}  # config.yaml fig6_grokking
GROK_TRAIN = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.1, "momentum": 0.0, "loss": "mse", "seed": 0}
WIDE_TRAIN = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "momentum": 0.0, "loss": "ce", "seed": 0}


# ----------------------------------------------------------------------------------------------------------
# helpers


def synchronize() -> None:
    """Wait for queued GPU work, so a wall time covers it (a no-op on the CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_time(function: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``repeats`` calls (and every time)."""
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        function()
        synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def row(
    workload: str,
    baseline: str,
    baseline_times: list[float],
    netdyn_times: list[float],
    agree: bool,
    target: str,
    met: bool | None,
    **details: Any,
) -> dict[str, Any]:
    baseline_s = statistics.median(baseline_times) if baseline_times else math.nan
    netdyn_s = statistics.median(netdyn_times)
    return {
        "workload": workload,
        "baseline": baseline,
        "baseline_s": baseline_s,
        "netdyn_s": netdyn_s,
        "ratio": baseline_s / netdyn_s if baseline_times else math.nan,
        "target": target,
        "met": met,
        "agree": bool(agree),
        "baseline_times": baseline_times,
        "netdyn_times": netdyn_times,
        **details,
    }


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """MNIST-shaped uint8 images [n, 28, 28] with a class-specific bright block (as tests/conftest.py)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for k in range(10):
        images[labels == k, 2 * k : 2 * k + 6, 4:24] += 150
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def machine() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ----------------------------------------------------------------------------------------------------------
# training: netdyn's loop (device tensors, index batches) against a conventional Dataset + DataLoader loop


class MnistStyleDataset(Dataset):
    """What torchvision.datasets.MNIST does per sample: a PIL image from uint8 pixels, then the transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        from torchvision.transforms import ToTensor

        self.images, self.labels, self.transform = images, labels, ToTensor()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        return self.transform(image), int(self.labels[index])


def netdyn_training(
    images: np.ndarray, labels: np.ndarray, model_spec: dict, train: dict, steps: int, batch: int, device="cpu"
) -> nn.Module:
    """netdyn.train.train_run's loop: the split as one float tensor on the device, batches as index slices of it."""
    x = torch.as_tensor(images.reshape(len(images), -1)).to(device, torch.float32) / 255.0
    y = torch.as_tensor(labels).long().to(device)
    model = build(model_spec, generator_seed=train["seed"]).to(device)
    optimizer = make_optimizer(model.parameters(), train)
    model.train()
    for step in range(steps):
        index = batch_indices(step, len(y), batch, train["seed"]).to(device)
        loss = loss_value(model(x[index]), y[index], train["loss"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


def conventional_training(
    images: np.ndarray,
    labels: np.ndarray,
    model_spec: dict,
    train: dict,
    steps: int,
    batch: int,
    batch_order: list[torch.Tensor] | None = None,
    device="cpu",
) -> nn.Module:
    """The textbook loop: MNIST-style dataset with ToTensor per sample, a shuffling DataLoader, same model."""
    dataset = MnistStyleDataset(images, labels)
    if batch_order is None:
        generator = torch.Generator().manual_seed(train["seed"])
        loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, generator=generator)
    else:  # the agreement check: exactly netdyn's batches
        loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batch_order])
    model = build(model_spec, generator_seed=train["seed"]).to(device)
    optimizer = make_optimizer(model.parameters(), train)
    model.train()
    step = 0
    while step < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss = loss_value(model(x.view(len(x), -1)), y, train["loss"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model


def conventional_data_only(images: np.ndarray, labels: np.ndarray, steps: int, batch: int) -> None:
    """The baseline's input pipeline alone: ``steps`` batches from the shuffling DataLoader, no model."""
    loader = DataLoader(MnistStyleDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True)
    step = 0
    while step < steps:
        for _ in loader:
            step += 1
            if step == steps:
                break


def training_flops(model_spec: dict, batch: int, steps: int) -> float:
    """Matmul FLOPs of training: forward 2BW per layer, weight gradient 2BW, input gradient 2BW (not layer 1)."""
    widths = [784, *([model_spec["width"]] * model_spec["depth"]), 10]
    per_layer = [2 * batch * a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return steps * (3 * sum(per_layer) - per_layer[0])


def matmul_peak(n: int, repeats: int, device="cpu") -> float:
    """Best float32 matmul FLOP/s of an n x n product at the current thread count (FLOPs = 2 n^3)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.matmul(a, b)
    best = min(median_time(lambda: torch.matmul(a, b), 1)[0] for _ in range(max(3, repeats)))
    return 2 * n**3 / best


def bench_training(
    name: str, sizes: dict, model_spec: dict, train: dict, repeats: int, peak: float | None, device="cpu"
) -> dict:
    images, labels = synthetic_images(sizes["n"])
    steps, batch = sizes["steps"], sizes["batch"]
    # Same answer: both loops fed netdyn's batches give the same weights (the per-step math is identical).
    check_steps = min(steps, 5)
    order = [batch_indices(s, len(labels), batch, train["seed"]) for s in range(check_steps)]
    ours = netdyn_training(images, labels, model_spec, train, check_steps, batch, device)
    theirs = conventional_training(images, labels, model_spec, train, check_steps, batch, order, device)
    difference = max(
        float((a - b).abs().max())
        for a, b in zip(ours.state_dict().values(), theirs.state_dict().values(), strict=True)
    )
    agree = difference <= SAME_BATCHES_TOLERANCE[torch.device(device).type]
    _, base = median_time(
        lambda: conventional_training(images, labels, model_spec, train, steps, batch, device=device), repeats
    )
    _, mine = median_time(lambda: netdyn_training(images, labels, model_spec, train, steps, batch, device), repeats)
    data_only, _ = median_time(lambda: conventional_data_only(images, labels, steps, batch), repeats)
    details: dict[str, Any] = {
        "max_weight_difference_same_batches": difference,
        "steps": steps,
        "batch": batch,
        # What bounds the ratio: the baseline is netdyn's compute plus its input pipeline, so the ratio is at most
        # about (data_only + netdyn time) / netdyn time.
        "baseline_data_only_s": data_only,
        "ratio_bound_from_data_pipeline": (data_only + statistics.median(mine)) / statistics.median(mine),
    }
    ratio = statistics.median(base) / statistics.median(mine)
    if peak is None:
        return row(name, "Dataset(ToTensor per sample) + DataLoader", base, mine, agree, ">= 5x", ratio >= 5, **details)
    achieved = training_flops(model_spec, batch, steps) / statistics.median(mine)
    details.update(achieved_flops=achieved, matmul_peak_flops=peak, fraction_of_peak=achieved / peak)
    met = ratio >= 1.5 and achieved >= 0.5 * peak
    return row(
        name, "Dataset(ToTensor per sample) + DataLoader", base, mine, agree, ">= 1.5x, >= 50% peak", met, **details
    )


# ----------------------------------------------------------------------------------------------------------
# basins: netdyn's batched copies against per-(amplitude, draw) loops


def basin_setup(sizes: dict, device="cpu") -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A fixed random net and inputs labelled by the net itself (clean accuracy 1, so the curves fall)."""
    model = build({"depth": sizes["depth"], "width": sizes["width"]}, generator_seed=0).eval().to(device)
    x = torch.rand(sizes["samples"], 784, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@torch.no_grad()
def weight_basin_loop(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, amplitudes, noise) -> torch.Tensor:
    """Per draw and amplitude: deepcopy the model, perturb every Linear w -> w (1 + eps xi), evaluate."""
    draws = noise[0][0].shape[0]
    accuracy = torch.zeros(len(amplitudes), draws, dtype=torch.float64, device=x.device)
    for a, eps in enumerate(amplitudes):
        for d in range(draws):
            perturbed = copy.deepcopy(model)
            linears = [m for m in perturbed if isinstance(m, nn.Linear)]
            for linear, (weight_noise, bias_noise) in zip(linears, noise, strict=True):
                linear.weight.mul_(1 + eps * weight_noise[d])
                linear.bias.mul_(1 + eps * bias_noise[d])
            accuracy[a, d] = (perturbed(x).argmax(1) == y).double().mean()
    return accuracy.cpu()


@torch.no_grad()
def input_basin_loop(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor, amplitudes, noise) -> torch.Tensor:
    """Per amplitude and repeat: evaluate the model on x + eps xi."""
    accuracy = torch.zeros(len(amplitudes), len(noise), dtype=torch.float64, device=x.device)
    for a, eps in enumerate(amplitudes):
        for r in range(len(noise)):
            accuracy[a, r] = (model(x + eps * noise[r]).argmax(1) == y).double().mean()
    return accuracy.cpu()


def basin_flop_bounds(sizes: dict) -> dict[str, float]:
    """Multiply-adds per sample of the loops over those of netdyn's batched copies (equal work otherwise).

    netdyn computes the first layer's response to the noise once per draw / repeat (it is linear in ε) and the
    remaining layers once per copy; the loops run every layer once per copy. On a compute-bound CPU this ratio
    is the most either batched routine can gain.
    """
    widths = [784, *([sizes["width"]] * sizes["depth"]), 10]
    macs = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    copies, draws = sizes["amplitudes"] * sizes["draws"], sizes["draws"]
    loop = copies * sum(macs)
    weight = (draws + 1) * macs[0] + copies * sum(macs[1:])  # noise field per draw, clean field once
    inputs = 2 * draws * macs[0] + copies * sum(macs[1:])  # clean and noise field per repeat
    return {"weight": loop / weight, "input": loop / inputs}


def bench_basins(sizes: dict, repeats: int, device="cpu") -> list[dict]:
    model, x, y = basin_setup(sizes, device)
    draws, n = sizes["draws"], sizes["samples"]
    # Argmax ties broken by round-off may flip a few samples: allow 3 samples' worth of accuracy, and report it.
    tolerance = 3 / n
    rows = []

    weight_amplitudes = np.logspace(-3, 1, sizes["amplitudes"]).tolist()
    noise = basins.draw_weight_noise(model, draws, torch.Generator().manual_seed(2))
    ours = basins.weight_basin_accuracies(model, x, y, weight_amplitudes, noise)
    theirs = weight_basin_loop(model, x, y, weight_amplitudes, noise)
    difference = float((ours.cpu() - theirs).abs().max())
    _, base = median_time(lambda: weight_basin_loop(model, x, y, weight_amplitudes, noise), repeats)
    _, mine = median_time(lambda: basins.weight_basin_accuracies(model, x, y, weight_amplitudes, noise), repeats)
    ratio = statistics.median(base) / statistics.median(mine)
    rows.append(
        row(
            "weight basin",
            "deepcopy, perturb, evaluate per draw",
            base,
            mine,
            difference <= tolerance,
            ">= 5x",
            ratio >= 5,
            max_accuracy_difference=difference,
            copies=len(weight_amplitudes) * draws,
            ratio_bound_from_flops=basin_flop_bounds(sizes)["weight"],
        )
    )

    input_amplitudes = np.logspace(-3, 2, sizes["amplitudes"]).tolist()
    input_noise = torch.randn(draws, n, 784, generator=torch.Generator().manual_seed(3)).to(device)
    ours = basins.input_basin_accuracies(model, x, y, input_amplitudes, input_noise)
    theirs = input_basin_loop(model, x, y, input_amplitudes, input_noise)
    difference = float((ours.cpu() - theirs).abs().max())
    _, base = median_time(lambda: input_basin_loop(model, x, y, input_amplitudes, input_noise), repeats)
    _, mine = median_time(lambda: basins.input_basin_accuracies(model, x, y, input_amplitudes, input_noise), repeats)
    ratio = statistics.median(base) / statistics.median(mine)
    rows.append(
        row(
            "input basin",
            "evaluate per amplitude and repeat",
            base,
            mine,
            difference <= tolerance,
            ">= 3x",
            ratio >= 3,
            max_accuracy_difference=difference,
            copies=len(input_amplitudes) * draws,
            ratio_bound_from_flops=basin_flop_bounds(sizes)["input"],
        )
    )
    return rows


# ----------------------------------------------------------------------------------------------------------
# RPD: one sort per neuron (netdyn) against scipy rankdata of every (neuron, class) contribution column


def rpd_rankdata(h: np.ndarray, readout: np.ndarray, labels: np.ndarray, bins: int = rpd.DEFAULT_BINS) -> np.ndarray:
    """Density of ρ by brute force: rank each neuron's contributions h_i A_ik in every class column k."""
    from scipy.stats import rankdata

    count, neurons = h.shape
    edges = rpd.bin_edges(bins)
    counts = np.zeros(bins, dtype=np.int64)
    rows = np.arange(count)
    for i in range(neurons):
        contributions = h[:, i, None].astype(np.float64) * readout[i][None, :]  # [P, C]
        ranks = rankdata(-contributions, axis=0, method="average")  # descending, ties averaged
        rho = (ranks[rows, labels] - 1) / (count - 1)
        counts += np.histogram(rho, bins=edges)[0]
    return counts / counts.sum() * bins


def rpd_inputs(sizes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    h = rng.standard_normal((sizes["samples"], sizes["width"]), dtype=np.float32)
    readout = rng.standard_normal((sizes["width"], 10))
    labels = rng.integers(0, 10, sizes["samples"])
    return h, readout, labels


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rpd_memory_child(side: str, samples: int, width: int) -> None:
    """Run in a fresh process: print the peak RSS growth of one RPD over the process holding only its inputs.

    The peak (VmHWM) is reset just before the call by writing 5 to /proc/self/clear_refs, so transient peaks of
    the imports and of building the inputs do not hide the RPD's own (ru_maxrss cannot be reset).
    """
    h, readout, labels = rpd_inputs({"samples": samples, "width": width})
    rpd.rpd(h[:4, :2], readout[:2], labels[:4] % 2)  # load the kernels before the baseline reading
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    if side == "netdyn":
        rpd.rpd(h, readout, labels)
    else:
        rpd_rankdata(h, readout, labels)
    after = _status_kib("VmHWM")
    print(json.dumps({"extra_bytes": (after - before) * 1024, "h_bytes": h.nbytes}))


def peak_extra_memory(side: str, sizes: dict) -> dict[str, int]:
    code = (
        "import torch; torch.set_num_threads(1); from benchmarks.run import rpd_memory_child; "
        f"rpd_memory_child({side!r}, {sizes['samples']}, {sizes['width']})"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench_rpd(sizes: dict, repeats: int) -> dict:
    h, readout, labels = rpd_inputs(sizes)
    _, ours = rpd.rpd(h, readout, labels)
    theirs = rpd_rankdata(h, readout, labels)
    difference = float(np.abs(ours - theirs).max())
    _, base = median_time(lambda: rpd_rankdata(h, readout, labels), repeats)
    _, mine = median_time(lambda: rpd.rpd(h, readout, labels), repeats)
    memory = peak_extra_memory("netdyn", sizes)
    baseline_memory = peak_extra_memory("baseline", sizes)
    memory_ratio = memory["extra_bytes"] / memory["h_bytes"]
    ratio = statistics.median(base) / statistics.median(mine)
    return row(
        "RPD of one layer",
        "scipy.stats.rankdata per (neuron, class) column",
        base,
        mine,
        difference <= 1e-9,
        ">= 20x; extra memory <= 3x h",
        ratio >= 20 and memory_ratio <= 3,
        max_density_difference=difference,
        peak_extra_memory_over_h=memory_ratio,
        baseline_peak_extra_memory_over_h=baseline_memory["extra_bytes"] / baseline_memory["h_bytes"],
        h_bytes=memory["h_bytes"],
    )


# ----------------------------------------------------------------------------------------------------------
# LP pruning: netdyn.pruning.fit_lp against scikit-learn's LinearRegression


def lp_inputs(sizes: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ReLU features of one layer, logits linear in them plus noise; train and test splits."""
    rng = np.random.default_rng(0)
    total, width = sizes["samples"] + sizes["test"], sizes["width"]
    features = np.maximum(rng.standard_normal((total, width), dtype=np.float32) + 0.5, 0)
    logits = features @ rng.standard_normal((width, 10), dtype=np.float32) / np.sqrt(width)
    logits += rng.standard_normal(logits.shape, dtype=np.float32)
    train = slice(0, sizes["samples"])
    test = slice(sizes["samples"], total)
    return features[train], logits[train], features[test], logits[test].argmax(1)


def bench_lp(sizes: dict, repeats: int) -> dict:
    from sklearn.linear_model import LinearRegression

    x_train, t_train, x_test, y_test = lp_inputs(sizes)
    x_train64 = x_train.astype(np.float64)  # scikit-learn in float64, as fit_lp; converted outside the timing

    def ours() -> torch.Tensor:
        return pruning.fit_lp(x_train, t_train)

    def theirs() -> LinearRegression:
        return LinearRegression().fit(x_train64, t_train.astype(np.float64))

    coefficients, fitted = ours(), theirs()
    our_acc = pruning.accuracy(pruning.lp_predict(coefficients, x_test), torch.as_tensor(y_test))
    their_acc = float((fitted.predict(x_test.astype(np.float64)).argmax(1) == y_test).mean())
    reference = np.vstack([fitted.coef_.T, fitted.intercept_[None, :]])
    coefficient_difference = float(np.abs(coefficients.numpy() - reference).max())
    _, base = median_time(theirs, repeats)
    _, mine = median_time(ours, repeats)
    agree = abs(our_acc - their_acc) <= 1e-6
    ratio = statistics.median(base) / statistics.median(mine)
    return row(
        "LP pruning of one layer",
        "sklearn LinearRegression",
        base,
        mine,
        agree,
        ">= 1x, accuracy equal to 1e-6",
        ratio >= 1 and agree,
        accuracy_difference=abs(our_acc - their_acc),
        max_coefficient_difference=coefficient_difference,
    )


# ----------------------------------------------------------------------------------------------------------
# activation dump: netdyn's HDF5 (default compression, and each other choice) against numpy.save of the same arrays


def bench_hessian(sizes: dict, repeats: int, device: str = "cpu") -> dict:
    """Hutchinson's trace estimate from a block of probes in one batched double backward (a vmap over the probes)
    against one double backward per probe (the same probes, in the same order)."""
    images, labels = synthetic_images(sizes["samples"])
    x = (torch.as_tensor(images.reshape(len(images), -1)).float() / 255).to(device)
    y = torch.as_tensor(labels).long().to(device)
    model = build({"depth": sizes["depth"], "width": sizes["width"], "batchnorm": True}, generator_seed=0).to(device)
    operator = hessian.hessian_operator(hessian.model_loss(model, x, y, "ce"), list(model.parameters()))
    probes = sizes["probes"]
    result: dict[str, hessian.Trace] = {}

    def batched() -> None:
        result["batched"] = hessian.hutchinson_trace(operator, probes=probes, block=probes, tol=0.0)
        synchronize()

    def loop() -> None:
        result["loop"] = hessian.hutchinson_trace(operator, probes=probes, block=1, tol=0.0)
        synchronize()

    baseline_s, baseline_times = median_time(loop, repeats)
    netdyn_s, netdyn_times = median_time(batched, repeats)
    difference = abs(result["batched"].trace - result["loop"].trace) / abs(result["loop"].trace)
    return row(
        f"Hessian trace, {probes} Rademacher probes, 784-{sizes['width']}x{sizes['depth']}-10 BN, "
        f"{sizes['samples']} samples",
        "one Hessian-vector product (double backward) per probe",
        baseline_times,
        netdyn_times,
        difference < 1e-4,
        "> 1x (issue 15: a batched vmap of probes should win on a CPU too)",
        baseline_s / netdyn_s > 1.0,
        relative_difference=difference,
        trace=result["batched"].trace,
        stderr=result["batched"].stderr,
    )


def write_dataset(path: Path, n: int) -> Path:
    """A netdyn dataset file (docs/formats.md) of synthetic MNIST-shaped images: ``n`` training, ``n // 4`` test."""
    with h5py.File(path, "w") as handle:
        for split, size, seed in (("train", n, 0), ("test", max(n // 4, 10), 1)):
            images, labels = synthetic_images(size, seed)
            handle[f"{split}/images"], handle[f"{split}/labels"] = images, labels.astype(np.uint8)
            handle.attrs[f"{split}_class_counts"] = json.dumps(np.bincount(labels, minlength=10).tolist())
        handle.attrs.update({"source": "synthetic", "schema_version": 1, "n_classes": 10, "sha256": "{}"})
    return path


def bench_stacked(sizes: dict, repeats: int, device: str = "cpu") -> dict:
    """R seed replicates of one BatchNorm net: R lone runs one after another against one stacked group."""
    model = {"depth": sizes["depth"], "width": sizes["width"], "batchnorm": True}
    train = {"batch_size": sizes["batch"], "steps": sizes["steps"], "device": device}
    specs = []
    for seed in range(sizes["members"]):
        spec = resolved_spec(model, {**train, "seed": seed})
        specs.append({**spec, "run": f"bench/s{seed:02d}", "snapshots": sorted({0, 5, sizes["steps"]})})
    with tempfile.TemporaryDirectory() as folder:
        data = write_dataset(Path(folder) / "data.h5", sizes["n"])

        def outputs(side: str) -> list[RunPaths]:
            root = Path(folder) / side
            return [
                RunPaths(root / s["run"] / "snapshots", root / s["run"] / "h.csv", root / s["run"] / "r.json")
                for s in specs
            ]

        def sequential() -> None:
            for spec, out in zip(specs, outputs("alone"), strict=True):
                train_run(spec, data, *out, log=lambda _: None)

        def stacked() -> None:
            train_group(specs, data, outputs("stacked"), log=lambda _: None)

        baseline_s, baseline_times = median_time(sequential, repeats)
        netdyn_s, netdyn_times = median_time(stacked, repeats)
        # Adam on a BatchNorm net turns float rounding into lr-sized steps wherever a gradient is near zero, so even
        # two lone runs that differ only in their thread count drift apart (measured on this workload: 6e-2 at step 5,
        # 0.9 at step 500). The check: at step 5 the stacked runs are no further from the lone runs than that control
        # (or within 1e-4), and at the end they reach the same test accuracy (within 0.02).
        control = [outputs("control")[i] for i in range(min(2, len(specs)))]
        for spec, out in zip(specs, control, strict=False):
            train_run({**spec, "snapshots": [0, 5]}, data, *out, threads=2, log=lambda _: None)
        early = "step000005.pt"
        worst = spread = worst_accuracy = 0.0
        for index, (alone, together) in enumerate(zip(outputs("alone"), outputs("stacked"), strict=True)):
            a, b = (torch.load(o.snapshots / early, weights_only=False)["state_dict"] for o in (alone, together))
            worst = max(worst, state_difference(a, b))
            if index < len(control):
                reference = torch.load(control[index].snapshots / early, weights_only=False)["state_dict"]
                spread = max(spread, state_difference(a, reference))
            accuracy = [pd.read_csv(side.history)["test_acc"].iloc[-1] for side in (alone, together)]
            worst_accuracy = max(worst_accuracy, abs(accuracy[0] - accuracy[1]))
    label = f"stacked training, {sizes['members']} seeds of 784-{sizes['width']}x{sizes['depth']}-10 BN"
    return row(
        label,
        f"{sizes['members']} lone runs one after another (netdyn.train.train_run)",
        baseline_times,
        netdyn_times,
        worst <= max(1e-4, spread) and worst_accuracy <= 0.02,
        ">= 1.0x on a CPU, >= 5x on a GPU (issue 12)",
        baseline_s / netdyn_s >= (1.0 if device == "cpu" else 5.0),
        max_relative_difference_step5=worst,
        lone_thread_spread_step5=spread,
        max_final_test_acc_difference=worst_accuracy,
        steps=sizes["steps"],
    )


def state_difference(a: dict, b: dict) -> float:
    """The largest relative difference of two state dicts over the entries that shape the function: weights and
    running variances (the Linear biases before BatchNorm and the running means are rounding noise, docs/design.md)."""
    kept = [k for k in a if k.endswith("weight") or k.endswith("running_var")]
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in kept)


def resolved_spec(model: dict, train: dict) -> dict:
    """A resolved run spec (netdyn.config defaults filled in) for the harness's own runs."""
    return {
        "experiment": "bench",
        "dataset": "synthetic",
        "model": {**MODEL_DEFAULTS, **model},
        "train": {**TRAIN_DEFAULTS, **train},
    }


def bench_dump(sizes: dict, repeats: int) -> dict:
    images, labels = synthetic_images(sizes["samples"])
    x = torch.as_tensor(images.reshape(len(images), -1)).float() / 255
    y = torch.as_tensor(labels)
    indices = np.arange(len(y))
    model = build({"depth": sizes["depth"], "width": sizes["width"]}, generator_seed=0)
    with tempfile.TemporaryDirectory() as folder:
        dump_path, npy_folder = Path(folder) / "dump.h5", Path(folder) / "npy"

        def ours(compression: str = activations.COMPRESSIONS[0]) -> None:
            activations.write(dump_path, model, {"train": (indices, x, y)}, compression=compression)

        def theirs() -> None:
            npy_folder.mkdir(exist_ok=True)
            np.save(npy_folder / "indices.npy", indices)
            np.save(npy_folder / "labels.npy", labels)
            for name, values in activations.compute(model, x).items():
                np.save(npy_folder / f"{name}.npy", values.numpy())

        ours()
        theirs()
        dumped = activations.read(dump_path)
        depth = sizes["depth"]
        pairs = [(dumped["logits"], np.load(npy_folder / "logits.npy"))] + [
            (dumped[kind][layer - 1], np.load(npy_folder / f"{kind}{layer:02d}.npy"))
            for kind in ("h", "x")
            for layer in range(1, depth + 1)
        ]
        # Both sides compute the same pieces (tests/test_activations.py asserts bit equality there); here, where the
        # dump's forward pass runs in a thread of its own, float32 rounding is allowed: relative 1e-5 of the values.
        difference = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in pairs)
        agree = difference <= 1e-5

        def theirs_synced() -> None:  # what netdyn's atomic writes also do: the bytes on disk, not in the page cache
            theirs()
            for path in npy_folder.iterdir():
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())

        _, base = median_time(theirs, repeats)
        _, base_synced = median_time(theirs_synced, repeats)
        npy_bytes = sum(p.stat().st_size for p in npy_folder.iterdir())
        alternatives = {}
        for compression in activations.COMPRESSIONS[1:]:
            _, times = median_time(lambda c=compression: ours(c), repeats)
            alternatives[f"{compression}_mb_per_s"] = npy_bytes / 1e6 / statistics.median(times)
            alternatives[f"{compression}_size_ratio"] = dump_path.stat().st_size / npy_bytes
        _, mine = median_time(ours, repeats)
        h5_bytes = dump_path.stat().st_size
    array_mb = npy_bytes / 1e6
    ratio = statistics.median(base) / statistics.median(mine)
    return row(
        "activation dump of one snapshot",
        "numpy.save of the same arrays",
        base,
        mine,
        agree,
        ">= 0.8x, size <= .npy",
        ratio >= 0.8 and h5_bytes <= npy_bytes,
        netdyn_mb_per_s=array_mb / statistics.median(mine),
        baseline_mb_per_s=array_mb / statistics.median(base),
        file_size_ratio=h5_bytes / npy_bytes,
        npy_mb=array_mb,
        h5_mb=h5_bytes / 1e6,
        compression=activations.COMPRESSIONS[0],
        ratio_against_fsynced_numpy_save=statistics.median(base_synced) / statistics.median(mine),
        max_relative_difference=difference,
        **alternatives,
    )


# ----------------------------------------------------------------------------------------------------------
# the quick preset end to end, and a no-op rerun (optional: --preset)


def copy_workflow(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for part in (*WORKFLOW_PARTS, "config.yaml"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    return target


def snakemake(workdir: Path, cores: int) -> tuple[float, str]:
    command = [sys.executable, "-m", "snakemake", "--directory", str(workdir), "--cores", str(cores)]
    command += ["--configfile", str(workdir / "config.yaml")]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=workdir, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"snakemake failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return wall, result.stdout + result.stderr


def per_rule_seconds(workdir: Path) -> dict[str, float]:
    """Sum of the ``s`` column of every results/benchmarks/<rule>/... .tsv, per rule."""
    totals: dict[str, float] = {}
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        rule = path.relative_to(workdir / "results" / "benchmarks").parts[0]
        lines = path.read_text().splitlines()
        seconds = sum(float(line.split("\t")[0]) for line in lines[1:] if line.strip())
        totals[rule] = totals.get(rule, 0.0) + seconds
    return totals


def bench_preset(cores: int, keep: Path | None) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="netdyn-bench-")) if keep is None else keep
    try:
        copy_workflow(workdir)
        wall, _ = snakemake(workdir, cores)
        rules = per_rule_seconds(workdir)
        started = job_summary(job_times(workdir / "results"))  # time to each job's first log line (benchmarks/jobs.py)
        noop, log = snakemake(workdir, cores)
        nothing = "Nothing to be done" in log
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return [
        row(
            "quick preset end to end",
            "-",
            [],
            [wall],
            True,
            "report; start-up share of job time <= 20%",
            started["startup_share"] is not None and started["startup_share"] <= 0.2,
            cores=cores,
            rule_seconds=rules,
            **started,
        ),
        row("no-op rerun (quick preset)", "-", [], [noop], nothing, "<= 5 s", noop <= 5, nothing_to_do=nothing),
    ]


# ----------------------------------------------------------------------------------------------------------
# main


def table(rows: list[dict]) -> str:
    header = ["workload", "baseline s", "netdyn s", "ratio", "target", "met", "agree"]
    lines = [header]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        base = "-" if math.isnan(r["baseline_s"]) else f"{r['baseline_s']:.3f}"
        ratio = "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"
        lines.append([r["workload"], base, f"{r['netdyn_s']:.3f}", ratio, r["target"], met, str(r["agree"])])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def run(
    smoke: bool = False,
    preset: bool = False,
    threads: int = 1,
    cores: int = 2,
    device: str = "cpu",
    log=print,
    rows: list[str] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every benchmark row (those whose label holds one of ``rows``, when given) and the machine it ran on;
    ``checkpoint`` is given the results so far after each row (a run stopped at a time limit keeps them)."""
    torch.set_num_threads(threads)
    if device != "cpu" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: no CUDA GPU is visible here")
    sizes = SMOKE if smoke else FULL
    repeats = sizes["repeats"]
    started = time.perf_counter()
    peak = matmul_peak(sizes["peak_n"], repeats, device)
    log(f"matmul peak: {peak / 1e9:.1f} GFLOP/s ({device}, {threads} CPU thread(s))")
    wide_model = {"depth": 2, "width": sizes["wide"]["width"]}
    grok, wide = sizes["grok"], sizes["wide"]
    wide_name = f"train 784-{wide['width']}x2-10"
    steps: list[tuple[str, Callable[[], list[dict] | dict]]] = [
        (
            "training (grokking net)",
            lambda: bench_training("train 784-200-200-10", grok, GROK_MODEL, GROK_TRAIN, repeats, None, device),
        ),
        (
            "training (wide net)",
            lambda: bench_training(wide_name, wide, wide_model, WIDE_TRAIN, repeats, peak, device),
        ),
        ("basins", lambda: bench_basins(sizes["basin"], repeats, device)),
        ("RPD", lambda: bench_rpd(sizes["rpd"], repeats)),
        ("LP pruning", lambda: bench_lp(sizes["lp"], repeats)),
        ("activation dump", lambda: bench_dump(sizes["dump"], repeats)),
        ("stacked training", lambda: bench_stacked(sizes["stack"], repeats, device)),
        ("Hessian trace", lambda: bench_hessian(sizes["hessian"], repeats, device)),
        ("any module (conv layers)", lambda: bench_conv(sizes["conv"], repeats)),
    ]
    if preset:
        steps.append(("quick preset", lambda: bench_preset(cores, None)))
    if rows:
        steps = [(label, function) for label, function in steps if any(word in label for word in rows)]
    results = {
        "mode": "smoke" if smoke else "full",
        "machine": machine(),
        "threads": threads,
        "device": torch.cuda.get_device_name() if device != "cpu" else "cpu",
        "matmul_peak_flops": peak,
        "sizes": sizes,
        "rows": [],
        "total_s": 0.0,
    }
    for label, function in steps:
        start = time.perf_counter()
        result = function()
        results["rows"].extend(result if isinstance(result, list) else [result])
        results["total_s"] = time.perf_counter() - started
        log(f"{label}: {time.perf_counter() - start:.1f} s")
        if checkpoint:
            checkpoint(results)
    return results


# ----------------------------------------------------------------------------------------------------------
# Any module (netdyn/layerview.py): a conv layer's RPD, a CNN's input basin, field capture of a ResNet-18


def small_cnn(channels: int) -> nn.Module:
    """Conv-BatchNorm2d-ReLU-MaxPool, Conv-ReLU-MaxPool, Linear-ReLU-Linear on one-channel 28x28 images."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def bench_conv(sizes: dict, repeats: int) -> list[dict]:
    import torchvision

    from netdyn import layerview

    torch.manual_seed(0)
    model = layerview.AnalysedNet(small_cnn(sizes["channels"]), (1, 28, 28)).eval()
    images = torch.rand(sizes["samples"], 784)
    h = layerview.capture(model, images)[0][0].numpy()  # the first conv layer's channel fields (spatial mean)
    readout = layerview.readout(model, 1, images).numpy()
    labels = np.random.default_rng(0).integers(0, 10, sizes["samples"])
    difference = float(np.abs(rpd.rpd(h, readout, labels)[1] - rpd_rankdata(h, readout, labels)).max())
    _, base = median_time(lambda: rpd_rankdata(h, readout, labels), repeats)
    _, mine = median_time(lambda: rpd.rpd(h, readout, labels), repeats)
    rows = [
        row(
            f"RPD of a conv layer ({sizes['channels']} channels)",
            "scipy.stats.rankdata per (channel, class) column",
            base,
            mine,
            difference <= 1e-9,
            ">= 10x",
            statistics.median(base) / statistics.median(mine) >= 10,
            max_density_difference=difference,
        )
    ]

    x = images[: sizes["basin_samples"]]
    with torch.no_grad():
        y = model(x).argmax(1)  # labelled by the net itself: clean accuracy 1, so the curve falls
    amplitudes = np.logspace(-3, 1, sizes["amplitudes"]).tolist()
    noise = torch.randn(sizes["noise_repeats"], *x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loop = input_basin_loop(model, x, y, amplitudes, noise)
    ours = basins.input_basin_accuracies(model, x, y, amplitudes, noise)
    with torch.no_grad():
        _, base = median_time(lambda: input_basin_loop(model, x, y, amplitudes, noise), repeats)
    _, mine = median_time(lambda: basins.input_basin_accuracies(model, x, y, amplitudes, noise), repeats)
    rows.append(
        row(
            "input basin of a CNN",
            "per amplitude and repeat: the model on x + eps xi",
            base,
            mine,
            bool(torch.allclose(loop, ours, atol=1.5 / len(x))),
            ">= 3x",
            statistics.median(base) / statistics.median(mine) >= 3,
            copies=len(amplitudes) * len(noise),
        )
    )

    resnet = torchvision.models.resnet18(num_classes=10)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    network = layerview.AnalysedNet(resnet, (1, 28, 28)).eval()
    batch = torch.rand(sizes["batch"], 784)
    layerview.view(network)  # found once per model, as every analysis finds it

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return network(batch)

    captured = layerview.capture(network, batch)
    _, base = median_time(forward, repeats)
    _, mine = median_time(lambda: layerview.capture(network, batch), repeats)
    rows.append(
        row(
            f"field capture of a ResNet-18 batch ({sizes['batch']})",
            "the plain forward pass",
            base,
            mine,
            bool(torch.equal(captured[2], forward())),
            "capture <= 1.5x the forward pass (ratio >= 0.67)",
            statistics.median(mine) <= 1.5 * statistics.median(base),
            layers=len(captured[0]),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds); checks the harness only")
    parser.add_argument("--preset", action="store_true", help="also run the quick preset end to end (~10+ min)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides (default 1)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores for --preset (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the training and basin rows run")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    parser.add_argument("--rows", help="comma-separated words: run only the rows whose label holds one (e.g. stacked)")
    args = parser.parse_args(argv)

    def write(results: dict[str, Any]) -> None:
        atomic.write_text(args.output, json.dumps(results, indent=2, default=float))

    with threadpool_limits(args.threads):
        results = run(
            smoke=args.smoke,
            preset=args.preset,
            threads=args.threads,
            cores=args.cores,
            device=args.device,
            rows=args.rows.split(",") if args.rows else None,
            checkpoint=write,
        )
    write(results)
    print(table(results["rows"]))
    print(f"total {results['total_s']:.1f} s; written to {args.output}")


if __name__ == "__main__":
    main()
