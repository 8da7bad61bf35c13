"""Release a stale Snakemake lock: ``python -m netdyn.unlock [folder]`` (``make run`` calls it first).

A Snakemake run killed outright (SIGKILL, a lost terminal) leaves its lock in ``.snakemake/locks``, and the next run
stops with a LockException although nothing holds the folder. This unlocks (``snakemake --unlock``) only when no live
process works in the folder with Snakemake (Snakemake itself or one of its job scripts, found through /proc); a live
run keeps its lock. Without /proc (not Linux) it leaves the lock alone and says so. Light: no torch, no pandas.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def lock_files(folder: Path) -> list[Path]:
    locks = folder / ".snakemake" / "locks"
    return sorted(locks.glob("*.lock")) if locks.is_dir() else []


def snakemake_processes(folder: Path) -> list[int] | None:
    """Pids of live processes whose working directory is ``folder`` and whose command line mentions snakemake (the
    scheduler, or a job script under .snakemake/scripts); None where /proc cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target, found = folder.resolve(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")).resolve() != target:
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended, or is not ours to read
            continue
        if "snakemake" in command:
            found.append(int(entry.name))
    return found


def release_stale_lock(folder: Path, snakemake: list[str]) -> str | None:
    """Unlock ``folder`` when its lock is stale; returns the notice to print, or None when there was nothing to do."""
    if not lock_files(folder):
        return None
    live = snakemake_processes(folder)
    if live is None:
        return "netdyn: a Snakemake lock exists and this system cannot tell whether it is stale; leaving it"
    if live:
        return f"netdyn: a Snakemake run (pid {live[0]}) is working in {folder}; its lock stays"
    done = subprocess.run([*snakemake, "--unlock", "--cores", "1"], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"netdyn: a stale Snakemake lock in {folder} could not be released: {last}"
    return f"netdyn: released a stale Snakemake lock in {folder} (no Snakemake process holds it; a killed run left it)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0] if args else ".")
    notice = release_stale_lock(folder, [sys.executable, "-m", "snakemake"])
    if notice:
        print(notice, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
