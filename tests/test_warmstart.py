"""netdyn.warmstart: a job handed to a warm server runs as it would cold (folder, environment, streams, status,
tracebacks), a killed job stops its child, the server starts on demand, exits when idle, and is off under SLURM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from netdyn import warmstart

JOB = """\
import os, sys
print("ran", os.getpid(), "torch-already-imported" if "torch" in sys.modules else "cold", os.getcwd(),
      os.environ.get("JOB_VALUE"), snakemake.rule, __file__)
print("to stderr", file=sys.stderr)
if os.environ.get("JOB_PIDFILE"):
    import signal, time
    if os.environ.get("JOB_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(os.environ["JOB_PIDFILE"], "w").write(str(os.getpid()))
    try:
        time.sleep(60)
    finally:
        if os.environ.get("JOB_MARKER"):
            open(os.environ["JOB_MARKER"], "w").write("cleaned up")
if os.environ.get("JOB_RAISE"):
    raise ValueError("a job that fails")
sys.exit(int(os.environ.get("JOB_CODE", "0")))
"""


def server_pids(folder: Path) -> list[int]:
    """The pids the servers' logs in ``folder`` give on their "serving" line."""
    return [
        int(line.split("(pid ")[1].split(",")[0])
        for log in folder.glob("*.log")
        for line in log.read_text().splitlines()
        if "serving" in line and "(pid " in line
    ]


def stop_servers(folder: Path) -> None:
    for pid in server_pids(folder):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def start_sleeping_job(
    script: Path, warm_dir: Path, folder: Path, env: dict | None = None, **popen
) -> tuple[subprocess.Popen, int]:
    """The job's process, started warm, and the pid of the child that runs it (which writes it, then sleeps)."""
    pidfile = folder / "job.pid"
    environ = {**os.environ, "NETDYN_WARM_START": "1", "NETDYN_WARM_DIR": str(warm_dir), "JOB_PIDFILE": str(pidfile)}
    environ.update(env or {})
    process = subprocess.Popen(
        [sys.executable, str(script)], env=environ, cwd=folder, stdout=subprocess.DEVNULL, **popen
    )
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return process, int(pidfile.read_text())


def ended_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture
def warm_dir():
    folder = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp"))  # short: a socket path holds 108 bytes
    yield folder
    stop_servers(folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A job script, the result of its first (cold) run, and the server that run started: ``(script, first, dir)``."""
    folder = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp"))
    script = write_job(tmp_path_factory.mktemp("job"))
    first = run(script, folder, script.parent)
    wait_for_server(folder)
    yield script, first, folder
    stop_servers(folder)


def write_job(folder: Path) -> Path:
    """A script as Snakemake writes it: its preamble (here a stand-in ``snakemake`` object), then the source, which
    also lies at the path the preamble names as ``__file__``."""
    original = folder / "job_source.py"
    original.write_text(warmstart_lines() + JOB)
    preamble = (
        "######## snakemake preamble start (automatically inserted, do not edit) ########\n"
        f"import types; snakemake = types.SimpleNamespace(rule='demo'); __real_file__ = __file__; "
        f"__file__ = {str(original)!r};\n" + warmstart.PREAMBLE_END
    )
    script = folder / "job_with_preamble.py"
    script.write_text(preamble + warmstart_lines() + JOB)
    return script


def warmstart_lines() -> str:
    return "from netdyn.warmstart import hand_off\nhand_off(globals())\n"


def run(script: Path, warm_dir: Path, cwd: Path, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "NETDYN_WARM_START": "1", "NETDYN_WARM_DIR": str(warm_dir), "NETDYN_WARM_IDLE": "30"}
    environ.pop("SLURM_JOB_ID", None)
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=cwd, env={**environ, **env}, timeout=120
    )


def wait_for_server(warm_dir: Path) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sockets = list(warm_dir.glob("*.sock"))
        if sockets:
            return sockets[0]
        time.sleep(0.1)
    raise AssertionError(f"no warm-start server came up: {[p.read_text() for p in warm_dir.glob('*.log')]}")


def test_the_first_job_runs_cold_and_starts_a_server_that_runs_later_jobs_as_they_would_run_cold(served, tmp_path):
    script, first, warm_dir = served
    assert first.returncode == 0, first.stderr
    assert first.stdout.split()[2] == "cold"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    warm = run(script, warm_dir, elsewhere, JOB_VALUE="given", JOB_CODE="3")
    assert warm.returncode == 3, warm.stderr  # the job's status is the process's
    word, pid, state, cwd, value, rule, file = warm.stdout.split()
    assert state == "torch-already-imported" and int(pid) != 0
    assert (cwd, value, rule, file) == (str(elsewhere), "given", "demo", str(script.parent / "job_source.py"))
    assert warm.stderr == "to stderr\n"
    log = next(warm_dir.glob("*.log")).read_text()
    assert f"job {script.parent / 'job_source.py'} (pid {pid}) exited 3" in log


def test_a_failing_job_shows_its_traceback_at_the_source_lines(served):
    script, _, warm_dir = served
    failed = run(script, warm_dir, script.parent, JOB_RAISE="1")
    assert failed.returncode == 1
    assert "torch-already-imported" in failed.stdout
    line = 2 + JOB.splitlines().index('    raise ValueError("a job that fails")') + 1
    assert f'File "{script.parent / "job_source.py"}", line {line}' in failed.stderr
    assert failed.stderr.rstrip().endswith("ValueError: a job that fails")


def test_killing_a_jobs_process_stops_the_job(served, tmp_path):
    script, _, warm_dir = served
    process, job = start_sleeping_job(script, warm_dir, tmp_path)
    assert job != process.pid  # it runs in the server's child
    process.kill()
    process.wait()
    assert ended_within(job, 20)


def test_a_server_that_dies_takes_its_jobs_with_it_and_their_processes_fail(tmp_path, warm_dir):
    script = write_job(tmp_path)
    run(script, warm_dir, tmp_path)
    wait_for_server(warm_dir)
    process, job = start_sleeping_job(script, warm_dir, tmp_path, stderr=subprocess.PIPE)
    [server] = server_pids(warm_dir)
    os.kill(server, signal.SIGKILL)
    assert process.wait(timeout=20) == 1
    assert ended_within(job, 20)
    assert "the warm-start server lost this job" in process.stderr.read().decode()  # (the job held it open too)


def test_a_job_the_server_cannot_start_runs_cold(tmp_path, warm_dir):
    """A server that takes the request and hangs up before its word that the job started (it could not fork, or
    watch the child): the job's own process runs the job."""
    script = write_job(tmp_path)
    path = warmstart.socket_path({**os.environ, "NETDYN_WARM_DIR": str(warm_dir)})  # the job's own (PYTHONPATH too)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(4)
    taken = []

    def hang_up() -> None:
        connection, _ = listener.accept()
        header, fds, _, _ = socket.recv_fds(connection, 8, 3)
        taken.append(len(header))
        for fd in fds:
            os.close(fd)
        connection.close()

    server = threading.Thread(target=hang_up, daemon=True)
    server.start()
    result = run(script, warm_dir, tmp_path, JOB_CODE="4")
    server.join(timeout=30)
    listener.close()
    assert taken == [8]  # it did reach the server
    assert result.returncode == 4 and result.stdout.split()[2] == "cold", result.stderr


def test_an_idle_server_exits_and_a_second_server_on_its_socket_does_not_start(warm_dir):
    path = warm_dir / "test.sock"
    command = [sys.executable, "-c", "import sys, netdyn.warmstart as w; w.serve(sys.argv[1], 3)", str(path)]
    first = subprocess.Popen(command)
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()
    second = subprocess.run(command, timeout=30)  # the lock is taken: it returns at once
    assert second.returncode == 0 and first.poll() is None
    assert first.wait(timeout=30) == 0
    assert not path.exists()


def test_warm_starts_are_asked_for_and_off_under_slurm_on_other_hosts_and_in_containers():
    assert not warmstart.enabled({})
    assert not warmstart.enabled({"NETDYN_WARM_START": "0"})
    assert warmstart.enabled({"NETDYN_WARM_START": "1"})
    assert not warmstart.enabled({"NETDYN_WARM_START": "1", "SLURM_JOB_ID": "42"})
    here = socket.gethostname()
    assert warmstart.enabled({"NETDYN_WARM_START": "1", "NETDYN_WARM_HOST": here})
    assert not warmstart.enabled({"NETDYN_WARM_START": "1", "NETDYN_WARM_HOST": here + "-a-cluster-node"})
    assert not warmstart.enabled({"NETDYN_WARM_START": "1", "APPTAINER_CONTAINER": "/images/netdyn.sif"})


def test_a_socket_folder_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    assert warmstart.socket_path({"NETDYN_WARM_DIR": str(shared)}) is None
    private = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp"))
    found = warmstart.socket_path({"NETDYN_WARM_DIR": str(private)})
    assert found is not None and found.parent == private and found.suffix == ".sock"
    assert warmstart.socket_path({"NETDYN_WARM_DIR": str(tmp_path / ("x" * 120))}) is None  # too long a path


def test_a_server_serves_only_jobs_that_import_netdyn_from_its_folder(tmp_path):
    """A job's child imports netdyn's modules through the server's package: a copy of netdyn elsewhere (a workflow
    copy on the import path) gets a server of its own."""
    shutil.copytree(Path(warmstart.__file__).parent, tmp_path / "copy" / "netdyn")
    private = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp"))
    show = "import sys; sys.path[:0] = sys.argv[1:]; import netdyn.warmstart as w; print(w.__file__, w.socket_path())"
    environ = {**os.environ, "NETDYN_WARM_DIR": str(private)}
    found = [
        subprocess.run(
            [sys.executable, "-c", show, *extra], capture_output=True, text=True, env=environ, check=True
        ).stdout.split()
        for extra in ([], [str(tmp_path / "copy")])
    ]
    shutil.rmtree(private)
    assert found[1][0] == str(tmp_path / "copy" / "netdyn" / "warmstart.py") and found[0][0] != found[1][0]
    assert found[0][1] != found[1][1]


def test_killing_a_jobs_process_lets_the_job_clean_up_then_kills_what_does_not_stop(served, tmp_path, warm_dir):
    script, _, shared_dir = served
    marker = tmp_path / "marker"
    process, job = start_sleeping_job(script, shared_dir, tmp_path, env={"JOB_MARKER": str(marker)})
    process.kill()
    process.wait()
    assert ended_within(job, 20) and marker.read_text() == "cleaned up"  # SIGTERM first: its finally block ran

    (tmp_path / "own").mkdir()
    own = write_job(tmp_path / "own")
    run(own, warm_dir, own.parent, NETDYN_WARM_GRACE="1")  # a server that waits 1 s after SIGTERM
    wait_for_server(warm_dir)
    process, job = start_sleeping_job(own, warm_dir, own.parent, env={"JOB_IGNORE_TERM": "1"})
    process.kill()
    process.wait()
    assert ended_within(job, 20)
    log = next(warm_dir.glob("*.log")).read_text()
    assert "still running 1 s after SIGTERM; SIGKILL" in log


def test_a_server_with_a_second_thread_does_not_fork_and_the_job_runs_cold_saying_why(tmp_path, warm_dir):
    script = write_job(tmp_path)
    path = warmstart.socket_path({**os.environ, "NETDYN_WARM_DIR": str(warm_dir)})
    threaded = (
        "import sys, threading, time; threading.Thread(target=time.sleep, args=(600,), daemon=True).start(); "
        "import netdyn.warmstart as w; w.serve(sys.argv[1])"
    )
    with open(warm_dir / "threaded.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-c", threaded, str(path)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = run(script, warm_dir, tmp_path, JOB_CODE="5")
    finally:
        server.kill()
    assert result.returncode == 5 and result.stdout.split()[2] == "cold", result.stderr
    assert "netdyn: this job runs cold: the warm-start server runs 2 threads, so it does not fork" in result.stderr


def test_a_client_that_sends_slowly_holds_up_no_other_job(served, tmp_path):
    script, _, warm_dir = served
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(str(wait_for_server(warm_dir)))
    stalled.sendall(struct.pack("!Q", 1000) + b"{")  # a request of 1,000 bytes announced, one sent, then nothing
    try:
        started = time.monotonic()
        result = run(script, warm_dir, tmp_path)
        took = time.monotonic() - started
    finally:
        stalled.close()
    assert result.returncode == 0 and result.stdout.split()[2] == "torch-already-imported", result.stderr
    assert took < 15  # a server reading requests one at a time would wait 30 s for the stalled one


def test_the_thread_variables_are_part_of_a_servers_identity():
    private = Path(tempfile.mkdtemp(prefix="nw", dir="/tmp"))
    base = {"NETDYN_WARM_DIR": str(private)}
    try:
        paths = [warmstart.socket_path({**base, **extra}) for extra in ({}, {}, {"OMP_NUM_THREADS": "2"},
                                                                         {"MKL_NUM_THREADS": "2"})]  # fmt: skip
    finally:
        shutil.rmtree(private)
    assert paths[0] == paths[1] and len(set(paths)) == 3
