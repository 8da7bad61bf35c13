"""Where a finished workflow's job time went: per rule, its jobs, their seconds, and the share spent starting.

    python -m benchmarks.jobs [RESULTS]     # default: results (of `make run`)

A job's time is its benchmark file's ``s`` (results/benchmarks/<rule>/...tsv, the whole process). Its start is the
benchmark file's modification time minus ``s``; its body starts when ``netdyn.logs.logged`` creates the job's log
(results/logs/<same path>.log; the file's birth time, which ext4, xfs and btrfs record) and ends at the log's last
write. So start-up = log birth - job start (Python, Snakemake's script preamble, imports) and exit = job end -
last log write (the final writes after the last log line, and the interpreter's shutdown). Local rules have no
benchmark and are not counted. Torch-free.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def birth_times(paths: list[Path]) -> list[float | None]:
    """Each file's birth time (s since the epoch), None where the filesystem does not record it."""
    if not paths:
        return []
    shown = subprocess.run(["stat", "-c", "%.9W", *map(str, paths)], capture_output=True, text=True, check=True)
    values = shown.stdout.split()
    try:
        times = [float(value) for value in values]
    except ValueError:  # a stat without sub-second %W: no birth times to trust
        return [None] * len(paths)
    return [value if value > 0 else None for value in times] if len(times) == len(paths) else [None] * len(paths)


def job_times(results: Path) -> list[dict]:
    """One row per benchmarked job that has a log: ``rule``, ``job`` (its path), ``s``, ``startup_s``, ``exit_s``."""
    benchmarks = results / "benchmarks"
    jobs = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        job = Path(str(path.relative_to(benchmarks)).removesuffix(".tsv"))  # a run may be named p0.6
        log = results / "logs" / f"{job}.log"
        lines = path.read_text().splitlines()
        if log.exists() and len(lines) > 1:
            jobs.append((job, path, log, float(lines[1].split("\t")[0])))
    births = birth_times([log for _, _, log, _ in jobs])
    rows = []
    for (job, path, log, seconds), birth in zip(jobs, births, strict=True):
        end = path.stat().st_mtime
        rule = job.parts[1].split("__")[0] if job.parts[0] == "stacks" else job.parts[0]
        rows.append(
            {
                "rule": rule,
                "job": str(job),
                "s": seconds,
                "startup_s": None if birth is None else max(0.0, birth - (end - seconds)),
                "exit_s": max(0.0, end - log.stat().st_mtime),
            }
        )
    return rows


def summary(rows: list[dict]) -> dict:
    """Totals: jobs, job seconds, start-up seconds and their share of the job seconds (None where unknown)."""
    seconds = sum(row["s"] for row in rows)
    known = all(row["startup_s"] is not None for row in rows)
    startup = sum(row["startup_s"] for row in rows) if known else None
    return {
        "jobs": len(rows),
        "job_s": seconds,
        "startup_s": startup,
        "startup_share": startup / seconds if known and seconds else None,
        "exit_s": sum(row["exit_s"] for row in rows),
    }


def render(rows: list[dict]) -> str:
    by_rule: dict[str, list[dict]] = {}
    for row in rows:
        by_rule.setdefault(row["rule"], []).append(row)
    lines = [f"{'rule':24s} {'jobs':>5s} {'job s':>8s} {'start-up s':>11s} {'exit s':>7s}"]
    for rule, group in sorted(by_rule.items(), key=lambda item: -sum(row["s"] for row in item[1])):
        total = summary(group)
        startup = "?" if total["startup_s"] is None else f"{total['startup_s']:.1f}"
        lines.append(f"{rule:24s} {total['jobs']:5d} {total['job_s']:8.1f} {startup:>11s} {total['exit_s']:7.1f}")
    total = summary(rows)
    share = "unknown (no file birth times here)" if total["startup_share"] is None else f"{total['startup_share']:.1%}"
    lines.append(f"total: {total['jobs']} jobs, {total['job_s']:.0f} job-seconds, start-up share {share}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    results = Path(args[0] if args else "results")
    if not (results / "benchmarks").is_dir():
        print(f"benchmarks.jobs: {results}/benchmarks: no such folder (run the workflow first)", file=sys.stderr)
        return 2
    print(render(job_times(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
