"""netdyn.unlock: a lock left by a killed run is released, a live run's lock is not (the kill itself: test_faults)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from netdyn.unlock import lock_files, release_stale_lock, snakemake_processes

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
SNAKEFILE = 'rule all:\n    output:\n        "done.txt"\n    shell:\n        "touch {output}"\n'


def locked_folder(tmp_path: Path) -> Path:
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.output.lock").write_text(str(tmp_path / "done.txt") + "\n")
    return tmp_path


def test_nothing_to_do_without_a_lock(tmp_path):
    assert release_stale_lock(tmp_path, SNAKEMAKE) is None


def test_a_stale_lock_is_released(tmp_path):
    folder = locked_folder(tmp_path)
    notice = release_stale_lock(folder, SNAKEMAKE)
    assert notice.startswith("netdyn: released a stale Snakemake lock")
    assert not lock_files(folder)


def test_a_live_snakemake_process_keeps_its_lock(tmp_path):
    folder = locked_folder(tmp_path)
    # A stand-in for a running Snakemake: its command line names snakemake and it works in the folder.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "snakemake"], cwd=folder)
    try:
        deadline = time.monotonic() + 10
        while live.pid not in (snakemake_processes(folder) or []) and time.monotonic() < deadline:
            time.sleep(0.05)
        notice = release_stale_lock(folder, SNAKEMAKE)
        assert notice == f"netdyn: a Snakemake run (pid {live.pid}) is working in {folder}; its lock stays"
        assert lock_files(folder)
    finally:
        live.kill()
        live.wait()
