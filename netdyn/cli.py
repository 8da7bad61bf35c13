"""The ``netdyn`` command.

    netdyn analyze --snapshots 'runs/*.pt' --data my.npz --out results/mine

writes ``OUT/config.yaml`` with one ``external`` experiment and runs the workflow's Snakemake rules in
``OUT`` (tables under ``OUT/results/runs/mine/<label>/``). Extra arguments after ``--`` go to Snakemake. Snakemake's
own output goes to ``OUT/snakemake.log`` (and to the terminal with ``-v``); the terminal shows its progress, and on a
failure each failed job's own error and where its log is.

    netdyn plan [--configfile presets/paper.yaml]

prints what a config will cost before it runs (netdyn.plan).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from netdyn.checkpoints import ExternalRunError
from netdyn.config import ConfigError, builder_reference, check_file, external_config, load_config, user_dataset
from netdyn.stages import DEFAULT_ANALYSES, STAGES

ROOT = Path(__file__).resolve().parent.parent
PROGRESS = re.compile(r"^\d+ of \d+ steps \(\d+%\) done$")
FAILED_JOB = re.compile(r"^Error in rule (\S+):\n((?:(?: {4}|\t).*\n?)*)", re.M)
LOG_TAIL_LINES = 15


class UsageError(ValueError):
    """A flag of ``netdyn analyze`` that cannot work, named with its value."""


def check_flags(args: argparse.Namespace) -> None:
    """Every path-taking flag names an existing file or folder of the right kind, before any config is written
    (``--data`` is checked where it is read, ``netdyn.config.user_dataset``)."""
    if any(c in args.snapshots for c in "*?["):
        if not glob.glob(os.path.expanduser(args.snapshots)):
            raise UsageError(f"--snapshots: the pattern {args.snapshots!r} matches no file")
    elif not os.path.exists(args.snapshots):
        raise UsageError(f"--snapshots: {args.snapshots!r} does not exist")
    if args.model is not None:
        builder_reference(args.model, "--model")
    for flag, value, kind in (("--analysis", args.analysis, "YAML analysis settings"),
                              ("--model-yaml", args.model_yaml, "a YAML model description")):  # fmt: skip
        if value is not None:
            check_file(flag, value, kind)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UsageError(f"--out: {args.out!r} exists and is not a folder")
    unknown = [name for name in args.analyses.split(",") if name not in STAGES]
    if unknown:
        raise UsageError(f"--analyses: unknown analysis {unknown[0]!r}; choose from {', '.join(STAGES)}")


def build_config(args: argparse.Namespace) -> dict:
    """The config of one external experiment ``mine`` with run ``args.label``."""
    dataset = user_dataset(args.data, "--data")
    location = args.snapshots if any(c in args.snapshots for c in "*?[") else str(Path(args.snapshots).resolve())
    if not os.path.isabs(location):
        location = str(Path.cwd() / location)
    settings = yaml.safe_load(Path(args.analysis).read_text()) if args.analysis else {}
    if not isinstance(settings or {}, dict):
        raise UsageError(f"--analysis: {args.analysis!r} does not hold a mapping of analysis settings")
    settings = dict(settings or {})
    if args.layers:
        settings["layers"] = [name.strip() for name in args.layers.split(",") if name.strip()]
    if args.conv_field:
        settings["conv_field"] = args.conv_field
    return external_config(
        "mine",
        args.label,
        dataset,
        location,
        args.analyses.split(","),
        model_yaml=str(Path(args.model_yaml).resolve()) if args.model_yaml else None,
        builder=builder_reference(args.model, "--model") if args.model else None,
        step_pattern=args.step_pattern,
        train={"loss": args.loss} if args.loss else None,
        analysis=settings or {},
    )


def failed_jobs(output: str) -> list[tuple[str, str | None]]:
    """(rule, log file or None) of every ``Error in rule`` block of a Snakemake run's output."""
    found = []
    for rule, block in FAILED_JOB.findall(output):
        log = re.search(r"^\s+log: (\S+)", block, re.M)
        found.append((rule, log.group(1) if log else None))
    return list(dict.fromkeys(found))


def run_snakemake(command: list[str], out: Path, verbose: bool) -> int:
    """Run Snakemake in ``out``. Its output goes to ``out/snakemake.log`` (and to the terminal when ``verbose``); the
    terminal gets its progress lines and, when a job fails, that job's own last log lines and where its log is."""
    log_path = out / "snakemake.log"
    with (
        open(log_path, "w") as log,
        subprocess.Popen(
            command, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as process,
    ):
        for line in process.stdout:
            log.write(line)
            if verbose:
                sys.stdout.write(line)
            elif PROGRESS.match(line.strip()):
                print(f"netdyn analyze: {line.strip()}", flush=True)
        code = process.wait()
    if code == 0:
        return 0
    if not verbose:
        for rule, job_log in failed_jobs(log_path.read_text()):
            where = out / job_log if job_log else None
            if where is not None and where.exists():
                tail = where.read_text().splitlines()[-LOG_TAIL_LINES:]
                print(f"netdyn analyze: job {rule} failed; the end of its log {where}:", file=sys.stderr)
                print("\n".join(f"    {line}" for line in tail), file=sys.stderr)
            else:
                print(f"netdyn analyze: job {rule} failed (no log of its own)", file=sys.stderr)
    print(f"netdyn analyze: failed (Snakemake exit {code}); Snakemake's own output: {log_path}", file=sys.stderr)
    return code


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
    analyze.add_argument("--model-yaml", help="model description for state-dict checkpoints of a netdyn MLP")
    analyze.add_argument(
        "--model", help="FILE.py:FUNCTION returning the module the state-dict checkpoints belong to (any network)"
    )
    analyze.add_argument("--layers", help="comma-separated activation modules to analyse (default: every one)")
    analyze.add_argument("--conv-field", choices=["mean", "max", "center"], help="conv field reduction (mean)")
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
    analyze.add_argument("-v", "--verbose", action="store_true", help="show Snakemake's own output")
    plan = commands.add_parser("plan", help="what a config will cost before it runs")
    plan.add_argument("--configfile", default=str(ROOT / "config.yaml"), help="config or preset (default: config.yaml)")
    args, extra = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    if args.command == "plan":
        from netdyn.plan import main as plan_main

        return plan_main(["--configfile", args.configfile, *extra])
    try:
        check_flags(args)
        config = build_config(args)
        (spec,) = load_config(config, ROOT / "schemas" / "config.schema.yaml").values()
        from netdyn.external import check_first_checkpoint  # torch: once the flags are right

        check_first_checkpoint(spec, config["datasets"]["mine"])
    except (UsageError, ConfigError, FileNotFoundError, yaml.YAMLError, ExternalRunError) as error:
        print(f"netdyn analyze: {error}".splitlines()[0], file=sys.stderr)
        return 2
    out = Path(args.out).resolve()  # Snakemake reads the config after moving into --directory
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(out)]
    command += ["--configfile", str(out / "config.yaml"), "--cores", str(args.cores), *[a for a in extra if a != "--"]]
    code = run_snakemake(command, out, args.verbose)
    if code == 0:
        print(f"netdyn analyze: done; tables in {out / 'results' / 'runs' / 'mine' / args.label}")
    return code


if __name__ == "__main__":
    sys.exit(main())
