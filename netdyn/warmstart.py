"""Warm start: run a workflow job in a process that has imported torch already (docs/design.md "Speed").

A torch job on the 2-core machine spends about 3 s importing torch before its first line of work, and the quick
preset is over a hundred such jobs. With ``NETDYN_WARM_START=1`` in its environment (the workflow sets it for the
jobs of a local run, rules/common.smk; ``NETDYN_WARM_START=0`` turns it off), a job's script first calls
``hand_off(globals())``: it connects to a server that has imported torch, numpy, pandas, h5py and hdf5plugin once,
sends the job (Snakemake's ``snakemake`` object, the script's source, its working folder, environment, umask and
standard streams), and exits with the status of the job, which the server runs in a forked child. The job itself is
unchanged: the same script, run with the same inputs in the same folder, writing to the same streams and log; its
imports of netdyn run fresh in the child, so edited netdyn code takes effect at once.

- No server yet: the first job starts one in the background and runs cold itself; the server serves the jobs that
  come after, and exits after ``NETDYN_WARM_IDLE`` seconds without a job (default 60).
- A server is per user, Python, import path, installed version of its preloaded packages, and netdyn's folder and
  version of this file (a hash names its socket), in ``NETDYN_WARM_DIR`` (default ``$XDG_RUNTIME_DIR`` or the
  temporary folder, in ``netdyn-warm-<uid>``, mode 0700); its log lists the jobs it ran.
- Off under SLURM (``SLURM_JOB_ID``: the job must stay inside its allocation), on a host other than
  ``NETDYN_WARM_HOST`` where that is set, in an Apptainer / Singularity container (its job must not run outside it),
  and where the platform lacks ``os.pidfd_open`` or descriptor passing. Killing the job's process kills (SIGKILL)
  its child's process group; a server that dies takes its children with it, and their jobs' processes exit 1.
- What differs from a cold job: Snakemake's benchmark files measure the job's own process, so their memory and CPU
  columns leave out the child's (the wall time ``s`` is right); resource limits (``ulimit``) are the server's.

Torch-free, and quick to import: it runs before each job's imports.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from pathlib import Path

PRELOADED = ("torch", "numpy", "pandas", "h5py", "hdf5plugin", "snakemake")
PREAMBLE_END = "######## snakemake preamble end #########\n"  # the line Snakemake's script preamble ends with
IDLE_SECONDS = 60.0
STARTED = b"S"  # the server's word that the job's child runs; before it, a job that cannot start here runs cold
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux
_in_child = False  # set in a server's child: the job's own hand_off call must run the script, not hand it off again


def enabled(environ=os.environ) -> bool:
    """Whether ``NETDYN_WARM_START`` asks for warm starts and this process may use them: not under SLURM, nor in a
    container, and on the host ``NETDYN_WARM_HOST`` names where it is set (the workflow sets it to its own: a job
    sent elsewhere is not a local one)."""
    return (
        environ.get("NETDYN_WARM_START", "").strip().lower() in {"1", "true", "yes", "on"}
        and not environ.get("SLURM_JOB_ID")
        and environ.get("NETDYN_WARM_HOST", socket.gethostname()) == socket.gethostname()
        and not (environ.get("APPTAINER_CONTAINER") or environ.get("SINGULARITY_CONTAINER"))
        and hasattr(os, "pidfd_open")
        and hasattr(socket, "send_fds")
        and not _in_child
    )


def socket_path(environ=os.environ) -> Path | None:
    """The socket of the server for this Python and its packages; None where its folder is unsafe or too deep."""
    import hashlib
    import importlib.util
    import tempfile

    folder = Path(environ.get("NETDYN_WARM_DIR") or (environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()))
    if not environ.get("NETDYN_WARM_DIR"):
        folder = folder / f"netdyn-warm-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        found = folder.stat()
    except OSError:
        return None
    if found.st_uid != os.getuid() or found.st_mode & 0o077:  # another user's folder, or one others can write
        return None
    # netdyn's own folder too: a child imports netdyn's modules from the package the server imported
    identity = [sys.executable, sys.prefix, environ.get("PYTHONPATH", ""), __file__, _version_of(__file__)]
    for name in PRELOADED:
        spec = importlib.util.find_spec(name)
        identity.append(f"{name}={spec.origin if spec else None}:{_version_of(spec.origin) if spec else ''}")
    key = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:16]
    path = folder / f"{key}.sock"
    return path if len(os.fsencode(path)) <= _SOCKET_PATH_MAX else None


def _version_of(path: str | None) -> str:
    try:
        found = os.stat(path)
    except (OSError, TypeError):
        return ""
    return f"{found.st_mtime_ns}:{found.st_size}"


def hand_off(script_globals: dict) -> None:
    """Run the calling workflow script in a warm server's child and exit with its status; return at once (the script
    then runs here, cold) where warm starts are off or no server is up yet, after starting one for later jobs."""
    if not enabled():
        return
    path = socket_path()
    if path is None:
        return
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(os.fspath(path))
    except OSError:
        connection.close()
        _start_server(path)
        return
    import pickle

    real_file = script_globals.get("__real_file__", script_globals["__file__"])
    source = Path(real_file).read_text()
    umask = os.umask(0)
    os.umask(umask)
    streams = [fd for fd in (0, 1, 2) if _is_open(fd)]
    request = pickle.dumps(
        {
            "snakemake": pickle.dumps(script_globals["snakemake"]),
            "source": source.split(PREAMBLE_END, 1)[-1],
            "file": script_globals["__file__"],
            "real_file": real_file,
            "cwd": os.getcwd(),
            "environ": dict(os.environ),
            "umask": umask,
            "sys_path": list(sys.path),
            "argv": list(sys.argv),
            "streams": streams,
        }
    )
    try:
        socket.send_fds(connection, [struct.pack("!Q", len(request))], streams)
        connection.sendall(request)
        started = _receive(connection, 1) == STARTED
    except OSError:
        started = False
    if not started:  # the server could not start it (and says why in its log): the job runs here, cold
        connection.close()
        return
    try:
        status = _receive(connection, 4)
    except OSError:  # the server died (its children with it)
        status = b""
    sys.stdout.flush()
    sys.stderr.flush()
    if len(status) < 4:
        print(f"netdyn: the warm-start server lost this job (its log: {path.with_suffix('.log')})", file=sys.stderr)
        os._exit(1)
    os._exit(struct.unpack("!i", status)[0])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _receive(connection: socket.socket, count: int) -> bytes:
    chunks, received = [], 0
    while received < count:
        chunk = connection.recv(count - received)
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


def _start_server(path: Path) -> None:
    import subprocess

    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)  # what this job can import
    with open(path.with_suffix(".log"), "a") as log:
        subprocess.Popen(
            [sys.executable, "-c", "import sys, netdyn.warmstart as w; w.serve(sys.argv[1])", os.fspath(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=environ,
            start_new_session=True,  # not in the job's process group or session: it outlives the job
            close_fds=True,
        )


def serve(path: str | os.PathLike, idle_seconds: float | None = None) -> None:
    """Serve jobs on socket ``path`` until ``idle_seconds`` (``NETDYN_WARM_IDLE``, default 60) pass without one.

    One server per socket (a lock beside it): a second one exits at once. The preloaded packages are imported
    before the socket opens, so a job never waits for them: until then jobs run cold."""
    import fcntl
    import gc
    import importlib
    import select
    import signal
    import time

    path = Path(path)
    if idle_seconds is None:
        idle_seconds = float(os.environ.get("NETDYN_WARM_IDLE", IDLE_SECONDS))
    lock = open(path.with_suffix(".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    os.chdir("/")  # not the first job's folder: the server must not keep it busy
    for name in PRELOADED:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    gc.freeze()  # the children share these objects' pages instead of copying them at their first collection
    try:  # a kernel or sandbox without pidfds cannot serve: jobs then find no server and run cold
        os.close(os.pidfd_open(os.getpid()))
    except OSError as error:
        _log(f"cannot serve here: {error}")
        return
    path.unlink(missing_ok=True)  # a dead server's socket; the lock says no live one has it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(os.fspath(path))
    listener.listen(64)
    _log(f"serving {path} (pid {os.getpid()}, idle exit {idle_seconds:g} s)")
    jobs: dict[int, tuple[int, socket.socket, str, float]] = {}  # pidfd -> (pid, connection, script, start)
    clients: dict[int, int] = {}  # connection fd -> pidfd, while the job's process waits
    idle_since, closing = time.monotonic(), False
    while True:
        if jobs:
            timeout = None
        elif closing:
            timeout = 0.0
        else:
            timeout = max(0.0, idle_seconds - (time.monotonic() - idle_since))
        ready = select.select([listener, *jobs, *clients], [], [], timeout)[0]
        if not ready and not jobs:
            if closing:
                break
            path.unlink(missing_ok=True)  # new jobs start a new server (or run cold); then drain what is queued
            closing = True
            continue
        for item in ready:
            if item is listener:
                try:
                    started = _accept(listener, [lock, listener, *(conn for _, conn, _, _ in jobs.values())], jobs)
                except Exception as error:  # one job's trouble must not end the server its other jobs run in
                    _log(f"could not take a job: {error!r}")
                    started = None
                if started is not None:
                    pidfd, connection = started
                    clients[connection.fileno()] = pidfd
            elif item in jobs:
                pid, connection, script, start = jobs.pop(item)
                clients.pop(connection.fileno(), None)
                code = _exit_code(os.waitpid(pid, 0)[1])
                try:
                    connection.sendall(struct.pack("!i", code))
                except OSError:
                    pass
                connection.close()
                os.close(item)
                _log(f"job {script} (pid {pid}) exited {code} after {time.monotonic() - start:.1f} s")
                idle_since = time.monotonic()
            elif item in clients:
                pidfd = clients.pop(item)
                pid, connection, script, _ = jobs[pidfd]
                try:
                    gone = not connection.recv(1)
                except OSError:
                    gone = True
                if gone:  # the job's process is gone (killed): so is its child
                    _log(f"job {script} (pid {pid}): its process ended; stopping it")
                    try:
                        os.killpg(pid, signal.SIGKILL)  # as if it had been killed itself: its writes are atomic
                    except ProcessLookupError:
                        pass
    listener.close()
    _log("idle: exiting")


def _log(message: str) -> None:
    import time

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it


def _accept(listener: socket.socket, inherited: list, jobs: dict) -> tuple[int, socket.socket] | None:
    """Receive one job and fork its child; ``(pidfd, connection)``, or None where it could not start (its process
    then runs it cold)."""
    import pickle
    import signal
    import time

    connection, _ = listener.accept()
    connection.settimeout(30)
    received: list[int] = []
    try:
        header, received, _, _ = socket.recv_fds(connection, 8, 3)
        if len(header) < 8:
            raise OSError("short header")
        size = struct.unpack("!Q", header)[0]
        payload = _receive(connection, size)
        if len(payload) < size:
            raise OSError("short request")
        request = pickle.loads(payload)
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        _log(f"dropped a broken request: {error}")
        _drop(connection, received)
        return None
    connection.settimeout(None)
    sys.stdout.flush()
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as error:
        _log(f"could not fork for {request['file']} ({error}): it runs cold")
        _drop(connection, received)
        return None
    if pid == 0:
        for handle in [*inherited, connection]:
            handle.close()
        for pidfd in jobs:
            os.close(pidfd)
        code = 1
        try:
            code = _run_job(request, received, server)
        except BaseException:  # never return into the server's loop from a child
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    try:  # as the child does: its group exists before the server may have to stop it
        os.setpgid(pid, pid)
    except OSError:
        pass
    try:
        pidfd = os.pidfd_open(pid)
        connection.sendall(STARTED)
    except OSError as error:  # the job's process is gone, or the child cannot be watched: stop it, run it cold
        _log(f"could not start {request['file']} ({error})")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _drop(connection, received)
        return None
    for fd in received:
        os.close(fd)
    jobs[pidfd] = (pid, connection, request["file"], time.monotonic())
    return pidfd, connection


def _drop(connection: socket.socket, received: list[int]) -> None:
    for fd in received:
        os.close(fd)
    connection.close()


def _run_job(request: dict, streams: list[int], server: int) -> int:
    """In the forked child: become the job's process (streams, folder, environment, imports) and run its script."""
    global _in_child
    import atexit
    import builtins
    import pickle
    import signal
    import threading
    import traceback
    import types

    _in_child = True
    os.setpgrp()  # its own process group, which the server stops when the job's process is killed
    try:  # a server that dies takes its jobs with it (their processes report the loss); Linux's PR_SET_PDEATHSIG
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != server:  # it died before that took hold
        return 1
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for target, fd in zip(request["streams"], streams, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["environ"])
    sys.path[:] = request["sys_path"]
    sys.argv[:] = request["argv"]
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if "torch" in sys.modules and threads.isdigit() and int(threads) > 0:  # what torch's import reads, cold
        sys.modules["torch"].set_num_threads(int(threads))
    code = 0
    try:
        module = types.ModuleType("__main__")
        module.__dict__.update(
            __file__=request["file"],
            __real_file__=request["real_file"],
            __builtins__=builtins,
            snakemake=pickle.loads(request["snakemake"]),
        )
        sys.modules["__main__"] = module
        exec(compile(request["source"], request["file"], "exec"), module.__dict__)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for thread in threading.enumerate():  # what the interpreter's shutdown would wait for
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code
