"""One GPU window of a preset: the config it runs and, afterwards, what it measured, each torch-free.

A lent GPU gives a session one command of at most ten minutes, so ``presets/paper-core.yaml`` runs in three windows
(issues 21 and 22), each one command of ``benchmarks/gpu_window.sh``:

    python -m benchmarks.window config PRESET --window 1|2|3 [--smoke]   # the window's config, as YAML on stdout
    python -m benchmarks.window trained CONFIG WORKDIR                  # CONFIG less what did not finish training
    python -m benchmarks.window summary WORKDIR OUT --wall-s S --config F [F ...]

``config`` keeps the preset's experiments of one window (``WINDOWS``) and the figure roles they play, nothing else
changed; ``--smoke`` shrinks that config to seconds on the CPU (``shrink``: the same experiments, sweep axes and
analyses at tiny sizes). ``trained`` keeps the experiments whose runs all finished training in a workflow stopped
at its time limit, so that a second, shorter run can still analyse them and score their claims. ``summary`` writes
``OUT/summary.json`` and ``OUT/summary.md``: job-seconds per rule (Snakemake's benchmark files), the devices the
runs trained on (run.json), the scorecard (claims.csv) and the planner's prediction for the same config beside the
measured wall time.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from netdyn.config import load_config, load_yaml
from netdyn.plan import GPUS, ROOT, plan

SCHEMA = ROOT / "schemas" / "config.schema.yaml"
# The windows of paper-core, each at most 6 minutes on one H200 by the planner (its constants measured on the first
# window, 4 December 2026): the deep BatchNorm nets (claims 1, 7, 9, 11); the depth x width grid with the grokking
# net (2, 3, 4, 6, 10: claim 6 compares the grokking net's basin with the grid's deep nets); the BatchNorm lag's
# batch sizes and learning rates with the shallow nets (5, 8, 12).
WINDOWS: dict[int, tuple[str, ...]] = {
    1: ("fig3_depth",),
    2: ("fig4_depth_width", "fig4_width", "fig6_grokking"),
    3: ("fig8_conditions", "fig8_lr", "fig2_shallow"),
}
# --smoke: sizes that keep every experiment's shape (its sweep axes, seeds >= 2, its analyses) and run in seconds.
SMOKE_DATASET = {"source": "mnist5k"}
SMOKE_TRAIN = {"steps": 20, "epochs": None, "batch_size": 64, "n_train": 500, "device": "cpu"}
SMOKE_MODEL_MAX = {"depth": 3, "width": 16}
SMOKE_SWEEP = {"model.depth": [2, 3], "model.width": [8, 16], "train.n_train": [200, 400]}
SMOKE_ANALYSIS = {"samples": 100, "test_samples": 100}


def window_config(preset: dict[str, Any], window: int) -> dict[str, Any]:
    """``preset`` with only the experiments of ``window`` and the figure roles they play."""
    missing = [name for name in WINDOWS[window] if name not in preset.get("experiments", {})]
    if missing:
        raise ValueError(f"window {window}: the preset has no experiment {', '.join(missing)}")
    return only_experiments(preset, WINDOWS[window])


def only_experiments(config: dict[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    """``config`` with the experiments ``keep`` alone, and the figure roles they play (figures left empty go)."""
    keep = set(keep)
    out = copy.deepcopy(config)
    out["experiments"] = {name: spec for name, spec in out["experiments"].items() if name in keep}
    figures = {}
    for figure, roles in out.get("figures", {}).items():
        kept = {}
        for role, experiments in roles.items():
            names = [experiments] if isinstance(experiments, str) else experiments
            names = [name for name in names if name in keep]
            if names:
                kept[role] = names[0] if isinstance(experiments, str) else names
        if kept:
            figures[figure] = kept
    out["figures"] = figures
    return out


def _smoke_snapshots(schedule: Any) -> dict[str, Any]:
    """Three log-spaced snapshots, keeping which of them hold weights (``weights``)."""
    weights = schedule.get("weights") if isinstance(schedule, dict) else None
    return {"log": 3, **({"weights": weights} if weights else {})}


def trained_experiments(config: dict[str, Any], workdir: Path) -> list[str]:
    """The experiments of ``config`` whose every run has finished training in ``workdir`` (its run.json exists)."""
    runs = load_config(config, SCHEMA)
    names = {spec["experiment"] for spec in runs.values()}
    missing = {
        spec["experiment"] for run, spec in runs.items() if not (workdir / "results/runs" / run / "run.json").exists()
    }
    return sorted(names - missing)


def shrink(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` at smoke sizes on the CPU: the same experiments, sweep axes (two values each) and analyses."""
    out = copy.deepcopy(config)
    out["datasets"] = {name: dict(SMOKE_DATASET) for name in out.get("datasets", {})}
    defaults = out.setdefault("defaults", {})
    defaults["train"] = {**defaults.get("train", {}), **SMOKE_TRAIN}
    defaults["snapshots"] = _smoke_snapshots(defaults.get("snapshots", {}))
    out["analysis"] = {**out.get("analysis", {}), **SMOKE_ANALYSIS}
    for spec in out["experiments"].values():
        model = spec.get("model", {})
        for key, largest in SMOKE_MODEL_MAX.items():
            if key in model:
                model[key] = min(model[key], largest)
        train = spec.get("train", {})
        spec["train"] = {k: v for k, v in train.items() if k not in SMOKE_TRAIN} | {
            k: SMOKE_TRAIN[k] for k in ("steps", "epochs") if k in train
        }
        if "n_train" in train:
            spec["train"]["n_train"] = min(train["n_train"], SMOKE_TRAIN["n_train"])
        spec["seeds"] = min(spec.get("seeds", 1), 2)
        if "snapshots" in spec:
            spec["snapshots"] = _smoke_snapshots(spec["snapshots"])
        if "samples" in spec.get("analysis", {}):
            spec["analysis"]["samples"] = SMOKE_ANALYSIS["samples"]
        spec["sweep"] = {axis: SMOKE_SWEEP.get(axis, values[:2]) for axis, values in spec.get("sweep", {}).items()}
        if not spec["sweep"]:
            del spec["sweep"]
    return out


def job_seconds(workdir: Path) -> dict[str, dict[str, float]]:
    """``{rule: {"jobs": n, "seconds": s}}`` from ``results/benchmarks``; a stack group's rule counts as its base."""
    totals: dict[str, dict[str, float]] = {}
    for path in sorted((workdir / "results" / "benchmarks").rglob("*.tsv")):
        relative = path.relative_to(workdir / "results" / "benchmarks")
        rule = (relative.stem if relative.parts[0] == "stacks" else relative.parts[0]).split("__")[0]
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[-1])
        entry = totals.setdefault(rule, {"jobs": 0, "seconds": 0.0})
        entry["jobs"] += 1
        entry["seconds"] += seconds
    return totals


def summary(workdir: Path, wall_s: float, config: list[Path], returncode: int) -> dict:
    merged: dict = {}
    for path in config:  # as snakemake merges several --configfile: later files update earlier ones
        merged = _update(merged, load_yaml(path))
    planned = plan(merged)
    records = [json.loads(p.read_text()) for p in sorted((workdir / "results" / "runs").rglob("run.json"))]
    claims = workdir / "results" / "claims.csv"
    return {
        "config": [str(p) for p in config],
        "returncode": returncode,
        "wall_s": wall_s,
        "runs": planned["total"]["runs"],
        "runs_finished": len(records),
        "runs_diverged": sum(r.get("status") == "diverged" for r in records),
        "devices": sorted({r.get("device", "?") for r in records}),
        "jobs": job_seconds(workdir),
        "planned_jobs": planned["total"]["jobs"],
        "planned_s": {"cpu_wall": planned["total"]["cpu_wall_s"], **{g: planned["total"][f"{g}_s"] for g in GPUS}},
        "design": {str(claim): why for claim, why in planned["claims"].items()},  # None: the design can settle it
        "claims": pd.read_csv(claims).to_dict("records") if claims.exists() else None,
    }


def _update(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _update(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def render(result: dict) -> str:
    lines = [
        f"# Window run: {' + '.join(result['config'])}",
        "",
        f"exit status {result['returncode']}; wall {result['wall_s']:.0f} s; runs finished {result['runs_finished']}"
        f" of {result['runs']} ({result['runs_diverged']} diverged); devices: {', '.join(result['devices']) or '-'}",
        "planned: " + ", ".join(f"{k} {v:.0f} s" for k, v in result["planned_s"].items()) + " (modelled)",
        "",
        "| rule | jobs | job-seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {rule} | {v['jobs']} | {v['seconds']:.1f} |" for rule, v in sorted(result["jobs"].items())]
    if result["claims"]:
        design = result.get("design", {})
        lines += ["", "| claim | verdict | scale | design |", "|---|---|---|---|"]
        lines += [
            f"| {c['claim']} | {c['verdict']} | {c['scale']} | {design.get(str(c['claim'])) or 'can settle'} |"
            for c in result["claims"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("config", help="the config of one window of a preset, as YAML on stdout")
    make.add_argument("preset", type=Path)
    make.add_argument("--window", type=int, choices=sorted(WINDOWS), required=True)
    make.add_argument("--smoke", action="store_true", help="at tiny sizes on the CPU (seconds)")
    trained = commands.add_parser(
        "trained", help="CONFIG less the experiments not fully trained in WORKDIR, as YAML on stdout (exit 1: none)"
    )
    trained.add_argument("config", type=Path)
    trained.add_argument("workdir", type=Path)
    measured = commands.add_parser("summary", help="what a window's workflow run measured: OUT/summary.{json,md}")
    measured.add_argument("workdir", type=Path)
    measured.add_argument("out", type=Path)
    measured.add_argument("--wall-s", type=float, required=True)
    measured.add_argument("--config", type=Path, nargs="+", required=True)
    measured.add_argument("--returncode", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "config":
        config = window_config(load_yaml(args.preset), args.window)
        print(yaml.safe_dump(shrink(config) if args.smoke else config, sort_keys=False), end="")
        return 0
    if args.command == "trained":
        config = load_yaml(args.config)
        names = trained_experiments(config, args.workdir)
        print(f"gpu_window: experiments fully trained: {', '.join(names) or 'none'}", file=sys.stderr)
        if names:
            print(yaml.safe_dump(only_experiments(config, names), sort_keys=False), end="")
        return 0 if names else 1
    result = summary(args.workdir, args.wall_s, args.config, args.returncode)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=2, default=float))
    (args.out / "summary.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
