"""What a workflow run measured, in one file: ``python -m benchmarks.window WORKDIR OUT --wall-s S --config F``.

Used by benchmarks/gpu_window.sh after it runs a preset: job-seconds per rule (Snakemake's benchmark files), the
devices the runs trained on (run.json), the scorecard (claims.csv) and the planner's prediction for the same
config beside the measured wall time. Writes ``OUT/summary.json`` and ``OUT/summary.md``; torch-free.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from netdyn.config import load_yaml
from netdyn.plan import GPUS, plan


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
        lines += ["", "| claim | verdict | scale |", "|---|---|---|"]
        lines += [f"| {c['claim']} | {c['verdict']} | {c['scale']} |" for c in result["claims"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--wall-s", type=float, required=True)
    parser.add_argument("--config", type=Path, nargs="+", required=True)
    parser.add_argument("--returncode", type=int, default=0)
    args = parser.parse_args(argv)
    result = summary(args.workdir, args.wall_s, args.config, args.returncode)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=2, default=float))
    (args.out / "summary.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
