"""The ``netdyn`` command.

    netdyn analyze --snapshots 'runs/*.pt' --data my.npz --out results/mine

writes ``OUT/config.yaml`` with one ``external`` experiment and runs the workflow's Snakemake rules in
``OUT`` (tables under ``OUT/results/runs/mine/<label>/``). Extra arguments after ``--`` go to Snakemake.

    netdyn plan [--configfile presets/paper.yaml]

prints what a config will cost before it runs (netdyn.plan).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

from netdyn.config import ConfigError, external_config, load_config
from netdyn.stages import DEFAULT_ANALYSES, STAGES

ROOT = Path(__file__).resolve().parent.parent


def build_config(args: argparse.Namespace) -> dict:
    """The config of one external experiment ``mine`` with run ``args.label``."""
    if os.path.exists(args.data):
        dataset = {"source": "arrays", "path": str(Path(args.data).resolve())}
    else:
        dataset = {"source": args.data}
    location = args.snapshots if any(c in args.snapshots for c in "*?[") else str(Path(args.snapshots).resolve())
    if not os.path.isabs(location):
        location = str(Path.cwd() / location)
    settings = yaml.safe_load(Path(args.analysis).read_text()) if args.analysis else {}
    return external_config(
        "mine",
        args.label,
        dataset,
        location,
        args.analyses.split(","),
        model_yaml=str(Path(args.model_yaml).resolve()) if args.model_yaml else None,
        step_pattern=args.step_pattern,
        train={"loss": args.loss} if args.loss else None,
        analysis=settings,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netdyn", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    analyze = commands.add_parser("analyze", help="analyse checkpoints trained elsewhere")
    analyze.add_argument("--snapshots", required=True, help="glob or folder of checkpoint files")
    analyze.add_argument(
        "--data", required=True, help=".npz/HDF5 with x_train, y_train, x_test, y_test, or a dataset name"
    )
    analyze.add_argument("--out", required=True, help="output folder (the Snakemake working directory)")
    analyze.add_argument("--label", default="run", help="run label (default: run)")
    analyze.add_argument("--model-yaml", help="model description for state-dict checkpoints")
    analyze.add_argument("--step-pattern", help="regex with one group: the step in a file name")
    stages = "; ".join(f"{name}: {stage.summary}" for name, stage in STAGES.items())
    analyze.add_argument(
        "--analyses",
        default=",".join(DEFAULT_ANALYSES),
        help=f"comma-separated (default: the paper's {', '.join(DEFAULT_ANALYSES)}). {stages}",
    )
    analyze.add_argument("--analysis", help="YAML file of analysis settings (docs/config.md, section analysis)")
    analyze.add_argument("--loss", choices=["ce", "mse"], help="loss the model was trained with (default: ce)")
    analyze.add_argument("--cores", default="all")
    plan = commands.add_parser("plan", help="what a config will cost before it runs")
    plan.add_argument("--configfile", default=str(ROOT / "config.yaml"), help="config or preset (default: config.yaml)")
    args, extra = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    if args.command == "plan":
        from netdyn.plan import main as plan_main

        return plan_main(["--configfile", args.configfile, *extra])
    config = build_config(args)
    try:
        load_config(config, ROOT / "schemas" / "config.schema.yaml")
    except ConfigError as error:
        print(f"netdyn analyze: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(out)]
    command += ["--configfile", str(out / "config.yaml"), "--cores", str(args.cores), *[a for a in extra if a != "--"]]
    return subprocess.call(command, cwd=out)


if __name__ == "__main__":
    sys.exit(main())
