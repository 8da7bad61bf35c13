"""What a config will cost before it runs: ``netdyn plan [--configfile F]`` (docs/presets.md "Planning a preset").

Per experiment and in total: runs, the groups stacked training forms (netdyn.config.stack_groups: runs of one
experiment sharing the network shape, batch size and snapshot schedule; a lone run is a group of one), training
steps, training FLOP, snapshots, activation-dump bytes, jobs per rule, and predicted time on this project's 2-core
CPU and on a GPU class. It also says which claims the config's design can settle (``netdyn.claims.design_check``).
Torch-free: it reads only the config.

The cost model, per job (a model, not a measurement; its constants and where they were measured are below):

* compute = FLOP / rate, with FLOP counted as 2 per multiply-add: training 6 M B per step (forward and backward of
  M multiply-adds per sample, batch B); each snapshot's history row 2 M (n_train + n_test), twice with BatchNorm
  (the train-mode readings); an analysis's forward passes over its samples (basins: one per amplitude and
  repeat / draw; pruning: one over its fitting and test samples plus the LP solves; RPD and geometry: one; the
  projection: train and test splits, twice with BatchNorm);
* plus a fixed start-up per job and a per-step overhead per layer (the Python loop, kernel launches), paid once per
  stacked group: its members share one job and one loop;
* plus the snapshots' bytes over the disk's write rate: the weights of every step kept (``snapshots.weights``),
  the final one with the optimizer's state (twice the weights' size for Adam); at the paper's sizes this is most of
  a deep net's training job (a 23 x 1024 net's weights are 96 MB);
* the CPU wall time is the job time over the cores, plus Snakemake's own bookkeeping per job.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netdyn.config import (
    DUMP_DEFAULTS,
    KNOWN_TRAIN_SIZES,
    ConfigError,
    conv_plan,
    dataset_definition,
    dump_bytes,
    dump_steps,
    hidden_widths,
    load_config,
    load_yaml,
    stack_groups,
    writes_dumps,
)
from netdyn.stages import STAGES

ROOT = Path(__file__).resolve().parent.parent
KNOWN_TEST_SIZES = {"mnist5k": 1000}  # every other built-in dataset has 10,000 test images

# CPU (this project's 2-core machine, one thread per job), measured 1 December 2026: a 784-1024x4-10 forward of
# 10,000 samples (78 GFLOP) in 1.97 s; a 300-step depth-1 run 6.4 s of CPU; Snakemake's main process about 0.4 s of
# a core per job (py-spy, benchmarks/RESULTS.md). Start-up and exit of a job started warm (netdyn.warmstart, the
# default of a local run), measured 2 December 2026 over make run's 114 jobs: 0.37 s + 0.19 s (3.3 s + 0.5 s cold).
# Its disk wrote 0.30 GB/s (dd with fsync, 4 December 2026).
CPU = {"flop_rate": 40e9, "small_flop_rate": 8e9, "startup_s": 0.6, "step_layer_s": 1.5e-4, "cores": 2,
       "scheduler_s": 0.4, "write_rate": 0.30e9}  # fmt: skip
# GPU classes: sustained FP32 FLOP/s, a per-step overhead per layer (the Python loop, kernel launches, a stack's
# per-member optimizer steps), start-up per job and the disk's write rate. H200, measured on the lent machine on
# 4 December 2026 (benchmarks/gpu/README.md): half the vendor's FP32 peak matched the jobs dominated by the
# snapshots' history rows (fig8 stacks of the 23 x 1024 BatchNorm net: 30-35 s measured, 28-31 s modelled); the
# overhead is what a 3-run stack of that net took beyond its FLOP over 4,680 steps (78 s measured, 47 s modelled
# with the earlier 5e-5 s); the write rate is what a stack that wrote 29.4 GB of snapshots took beyond that model
# (82 s, of them 53 s writing). The A100 class keeps its vendor-based rate and takes the H200's overhead and write
# rate: not measured.
GPUS = {
    "h200": {"flop_rate": 0.5 * 67e12, "step_layer_s": 3.3e-4, "startup_s": 6.0, "write_rate": 0.55e9},
    "a100": {"flop_rate": 0.5 * 19.5e12, "step_layer_s": 3.3e-4, "startup_s": 6.0, "write_rate": 0.55e9},
}
OPTIMIZER_MOMENTS = {"adam": 2, "adamw": 2, "sgd": 1}  # state tensors per parameter in a final snapshot
COLLECT_RUN_S = 0.2  # collect's work per run (merging its tables, finding its events), inside its experiment's job
SMALL_LAYER = 256 * 256  # multiply-adds per sample below which a layer's matmuls run at the small-matrix rate


def model_macs(model: Mapping[str, Any]) -> tuple[int, list[int]]:
    """Multiply-adds per sample of a forward pass, and those of each layer (for an MLP, its weight matrix's size)."""
    if model.get("arch") == "cnn":
        return _cnn_macs(model)
    sizes = [model["input_size"], *hidden_widths(model), model["classes"]]
    layers = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return sum(layers), layers


def _cnn_macs(model: Mapping[str, Any]) -> tuple[int, list[int]]:
    """A cnn's conv layers at their image size ("same" padding: kernel² · in · out per position), then its head."""
    channels, side = int(model["input_shape"][0]), int(model["input_shape"][1])
    kernel, layers = int(model["kernel"]), []
    for width, side_after, _ in conv_plan(model):
        layers.append(kernel * kernel * channels * width * side * side)
        channels, side = width, side_after
    sizes = [channels * side * side, *model["head_widths"], model["classes"]]
    layers += [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return sum(layers), layers


def parameter_count(model: Mapping[str, Any]) -> int:
    """Weights, biases and BatchNorm's four values per unit of a model spec."""
    if model.get("arch") != "cnn":
        macs, _ = model_macs(model)
        widths = hidden_widths(model)
        return macs + sum(widths) + model["classes"] + (4 * sum(widths) if model.get("batchnorm") else 0)
    channels, kernel, count = int(model["input_shape"][0]), int(model["kernel"]), 0
    units = []
    for width, _, _ in conv_plan(model):
        count += kernel * kernel * channels * width + width
        units.append(width)
        channels = width
    side = conv_plan(model)[-1][1]
    sizes = [channels * side * side, *model["head_widths"], model["classes"]]
    count += sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    units += list(model["head_widths"])
    return count + (4 * sum(units) if model.get("batchnorm") else 0)


def snapshot_bytes(run: Mapping[str, Any]) -> int:
    """Bytes of a run's snapshot files: the weights (and BatchNorm's buffers) of each step it keeps, and the
    optimizer's state in the final one."""
    values = parameter_count(run["model"])
    size = values * (8 if run["train"]["dtype"] == "float64" else 4)
    kept = len(run.get("weights", run["snapshots"]))
    return size * (kept + OPTIMIZER_MOMENTS.get(run["train"]["optimizer"], 2))


def _sizes(run: Mapping[str, Any]) -> tuple[int, int]:
    n_train = run["train"]["n_train"] or KNOWN_TRAIN_SIZES.get(run["dataset"], 60000)
    return n_train, KNOWN_TEST_SIZES.get(run["dataset"], 10000)


def _analysis_flop(run: Mapping[str, Any], stage: str, macs: int) -> tuple[float, float]:
    """FLOP of one analysed step of ``stage``: its forward passes and the rest (sorting, solves); see the module
    docstring. A stage that reads shared fields gets its forward from the activation dump instead."""
    analysis, model = run["analysis"], run["model"]
    bn = bool(model.get("batchnorm"))
    n_train, n_test = _sizes(run)
    samples = min(analysis["samples"] or n_train, n_train)
    if stage in ("rpd", "geometry"):
        return 2 * macs * samples, 20 * samples * math.log2(max(samples, 2)) * sum(hidden_widths(model))
    if stage == "basins":
        grids = analysis["input_amplitudes"]["num"] * analysis["input_repeats"]
        grids += analysis["weight_amplitudes"]["num"] * analysis["weight_draws"]
        return 2 * macs * samples * (grids + 1), 0.0
    if stage == "pruning":
        fit = min(analysis["lp_train_samples"] or n_train, n_train)
        test = min(analysis["test_samples"] or n_test, n_test)
        return 2 * macs * (fit + test), sum(2 * fit * width * width for width in hidden_widths(model))
    if stage == "projection":
        return 2 * macs * (n_train + n_test) * (2 if bn else 1), 0.0
    if stage == "bn_modes":
        return (2 * macs * min(analysis["test_samples"] or n_test, n_test) if bn else 0.0), 0.0
    if stage == "hessian":  # a Hessian-vector product costs about four forward passes (double backward)
        hessian_samples = min(analysis["hessian_samples"] or samples, n_train)
        products = analysis["hessian_iterations"] + analysis["hessian_probes"]
        return 2 * macs * hessian_samples * (1 + 4 * products), 0.0
    if stage == "collapse":  # covariances and a pseudo-inverse per layer
        return 2 * macs * samples, sum(2 * samples * w * w + 10 * w**3 for w in hidden_widths(model))
    if stage == "cka":  # the layer matrix, and each layer against its last state
        widths = hidden_widths(model)
        return 2 * macs * samples, 6 * samples * (sum(widths) ** 2 / 2 + sum(w * w for w in widths))
    raise ValueError(f"no cost model for stage {stage!r}")


def _rate(layers: list[int], device: Mapping[str, float]) -> float:
    """A FLOP rate weighted by the layers' sizes: small matrices run at the small-matrix rate on the CPU."""
    small = device.get("small_flop_rate", device["flop_rate"])
    total = sum(layers)
    slow = sum(size for size in layers if size < SMALL_LAYER)
    return total / (slow / small + (total - slow) / device["flop_rate"])


def run_cost(
    run: Mapping[str, Any], device: Mapping[str, float], dumps: Mapping[str, Any], stacked: str | None = None
) -> dict[str, Any]:
    """Jobs and predicted job-seconds of one run on ``device`` (training, dumps, stages). ``stacked``: the
    run belongs to a stack group, as its ``first`` member (which carries the group's training and analysis jobs,
    their start-ups and the training loop's overhead) or as a ``member`` (its compute only). A group's jobs count
    under their base rule (``train``, ``analyse_<stage>``), as snakemake -n's ``<rule>__<group>`` rules do."""
    macs, layers = model_macs(run["model"])
    rate = _rate(layers, device)
    n_train, n_test = _sizes(run)
    steps, batch = run["train"]["steps"], run["train"]["batch_size"]
    snapshots = len(run["snapshots"])
    history = 2 * macs * (n_train + n_test) * (2 if run["model"].get("batchnorm") else 1)
    train_flop = 6 * macs * batch * steps
    written = snapshot_bytes(run)
    seconds = (train_flop + history * snapshots) / rate + written / device["write_rate"]
    if stacked != "member":
        seconds += device["startup_s"] + steps * len(layers) * device["step_layer_s"]
    own_job = 0 if stacked == "member" else 1
    jobs = {"train": own_job}
    requested = run["analysis"]["run"]
    dumped = writes_dumps(run, dumps)
    if dumped:  # one forward per dumped step, shared by the stages that read the fields
        jobs["dump_activations"] = 1
        samples = min(run["analysis"]["samples"] or n_train, n_train)
        seconds += device["startup_s"] + 2 * macs * samples * len(dump_steps(run)) / rate
    for stage in STAGES:
        if stage in requested:
            jobs[f"analyse_{stage}"] = own_job
            forward, rest = _analysis_flop(run, stage, macs)
            if STAGES[stage].reads_fields and dumped:
                forward = 0.0
            seconds += device["startup_s"] * own_job + (forward + rest) * len(run["analysis"]["steps_of"][stage]) / rate
    seconds += device.get("scheduler_s", 0.0) * sum(jobs.values()) + COLLECT_RUN_S
    return {
        "jobs": jobs,
        "seconds": seconds,
        "train_flop": train_flop,
        "steps": steps,
        "snapshots": snapshots,
        "snapshot_bytes": written,
        "dump_bytes": dump_bytes(run, {**DUMP_DEFAULTS, **dumps}["dtype"], dumps),
    }


def plan(config: Mapping[str, Any], schema: str | Path = ROOT / "schemas" / "config.schema.yaml") -> dict[str, Any]:
    """The plan of a config: ``experiments`` (rows as dicts), ``total``, ``jobs`` per rule and ``claims``."""
    from netdyn.claims import design_check, design_runs

    runs = load_config(config, schema)
    dumps = config.get("dumps", {})
    groups = stack_groups(runs)
    stacked = {run: "first" if run == members[0] else "member" for members in groups.values() for run in members}
    rows: dict[str, dict[str, Any]] = {}
    jobs: dict[str, int] = {}
    for run, spec in runs.items():
        cpu = run_cost(spec, CPU, dumps, stacked.get(run))
        row = rows.setdefault(
            spec["experiment"],
            {"experiment": spec["experiment"], "runs": 0, "groups": set(), "steps": 0, "train_flop": 0.0,
             "snapshots": 0, "snapshot_gb": 0.0, "dump_gb": 0.0, "jobs": 0, "cpu_job_s": 0.0,
             **{f"{g}_s": 0.0 for g in GPUS}},
        )  # fmt: skip
        row["runs"] += 1
        row["groups"].add(next((g for g, members in groups.items() if run in members), run))
        row["steps"] += cpu["steps"]
        row["train_flop"] += cpu["train_flop"]
        row["snapshots"] += cpu["snapshots"]
        row["snapshot_gb"] += cpu["snapshot_bytes"] / 1e9
        row["dump_gb"] += cpu["dump_bytes"] / 1e9
        row["jobs"] += sum(cpu["jobs"].values())
        row["cpu_job_s"] += cpu["seconds"]
        for name, device in GPUS.items():
            row[f"{name}_s"] += run_cost(spec, device, dumps, stacked.get(run))["seconds"]
        for rule, count in cpu["jobs"].items():
            jobs[rule] = jobs.get(rule, 0) + count
    experiments = [{**row, "groups": len(row["groups"]), "jobs": row["jobs"] + 1} for row in rows.values()]  # + collect
    figures = config.get("figures", {})
    jobs["prepare_data"] = len({spec["dataset"] for spec in runs.values()})
    jobs["collect"] = len(experiments)  # one torch-free job per experiment (its start-up in the wall time below)
    jobs["figure"] = len(figures)
    jobs["claims"] = jobs["front_page"] = 1 if figures else 0
    if figures.get("figS1", {}).get("sweep"):
        jobs["flatness"] = 1  # the report's table of flatness against accuracy (rule flatness)
    jobs["all"] = 1
    total = {key: sum(row[key] for row in experiments) for key in experiments[0] if key != "experiment"}
    total["jobs"] = sum(jobs.values())
    total["cpu_wall_s"] = total["cpu_job_s"] / CPU["cores"] + 2.0 * (jobs["figure"] + jobs["collect"])
    datasets = sorted({spec["dataset"] for spec in runs.values()})
    context = {"datasets": datasets, "sources": sorted({dataset_definition(config, d)["source"] for d in datasets})}
    claims = design_check(design_runs(config, runs), context) if figures else {}
    return {"experiments": experiments, "total": total, "jobs": jobs, "claims": claims}


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


def render(result: Mapping[str, Any]) -> str:
    """The plan as text: a table per experiment, the total, the job list and the claims."""
    gpus = list(GPUS)
    header = ["experiment", "runs", "groups", "steps", "TFLOP", "snapshots", "snapshots GB", "dumps GB", "jobs"]
    header += ["CPU job time"]
    header += [f"{g.upper()} (modelled)" for g in gpus]
    lines = []
    for row in [*result["experiments"], {**result["total"], "experiment": "total"}]:
        cells = [row["experiment"], row["runs"], row["groups"], row["steps"], f"{row['train_flop'] / 1e12:.3g}"]
        cells += [row["snapshots"], f"{row['snapshot_gb']:.1f}", f"{row['dump_gb']:.2f}", row["jobs"]]
        cells += [_duration(row["cpu_job_s"])]
        cells += [_duration(row[f"{g}_s"]) for g in gpus]
        lines.append([str(cell) for cell in cells])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    text = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    text += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    total = result["total"]
    text.append("")
    text.append(
        f"predicted on this CPU ({CPU['cores']} cores): {_duration(total['cpu_wall_s'])} wall; "
        "GPU columns: one GPU, jobs one after another (a model, not a measurement)"
    )
    text.append("jobs: " + ", ".join(f"{rule} {count}" for rule, count in result["jobs"].items()))
    settle = [str(claim) for claim, why in result["claims"].items() if why is None]
    text.append(f"claims its design can settle: {', '.join(settle) or 'none'}")
    for claim, why in result["claims"].items():
        if why is not None:
            text.append(f"  claim {claim}: {why}")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netdyn plan", description="What a config will cost before it runs.")
    parser.add_argument(
        "--configfile", default=str(ROOT / "config.yaml"), help="config or preset (default: config.yaml)"
    )
    args = parser.parse_args(argv)
    try:
        print(render(plan(load_yaml(args.configfile))))
    except ConfigError as error:
        print(f"netdyn plan: {args.configfile}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
