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
- A server is per user, Python, import path, installed version of its preloaded packages, netdyn's folder and
  version of this file, and the BLAS / OpenMP thread variables (``THREAD_VARIABLES``: its libraries read them when
  imported) (a hash names its socket), in ``NETDYN_WARM_DIR`` (default ``$XDG_RUNTIME_DIR`` or the temporary
  folder, in ``netdyn-warm-<uid>``, mode 0700); its log lists the jobs it ran.
- It forks only while it has a single thread and CUDA is not initialised in it (a fork would copy a lock held by
  another thread, or a CUDA context the child cannot use): else it refuses, and the job runs cold, saying why. It
  reads a request without blocking, so a client that sends slowly (or not at all) holds up no other job.
- Off under SLURM (``SLURM_JOB_ID``: the job must stay inside its allocation), on a host other than
  ``NETDYN_WARM_HOST`` where that is set, in an Apptainer / Singularity container (its job must not run outside it),
  and where the platform lacks ``os.pidfd_open`` or descriptor passing. Killing the job's process stops its child's
  process group: SIGTERM (the child's ``finally`` blocks run: a SystemExit of status 143), then SIGKILL after
  ``NETDYN_WARM_GRACE`` seconds (default 10); a server that dies takes its children with it, and their jobs'
  processes exit 1.
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
GRACE_SECONDS = 10.0  # between SIGTERM and SIGKILL when a job's process is gone
REQUEST_SECONDS = 30.0  # a request not received whole in this time is dropped (its job then runs cold)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
STARTED = b"S"  # the server's word that the job's child runs; before it, a job that cannot start here runs cold
REFUSED = b"R"  # the server's word that it will not run the job, followed by why: the job runs cold and says so
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
    identity += [f"{name}={environ.get(name, '')}" for name in THREAD_VARIABLES]
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
        word = _receive(connection, 1)
        why = connection.recv(1000).decode(errors="replace") if word == REFUSED else ""
    except OSError:
        word, why = b"", ""
    if word != STARTED:  # the server could not start it (and says why in its log): the job runs here, cold
        if why:
            print(f"netdyn: this job runs cold: {why}", file=sys.stderr)
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
    import pickle
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
    # The server computes nothing: its libraries start no thread pool (torch's OpenMP pool would be a second thread,
    # which makes forking unsafe); each child sizes its own from its job's OMP_NUM_THREADS.
    os.environ.update({name: "1" for name in THREAD_VARIABLES})
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
    grace = float(os.environ.get("NETDYN_WARM_GRACE", GRACE_SECONDS))
    jobs: dict[int, tuple[int, socket.socket, str, float]] = {}  # pidfd -> (pid, connection, script, start)
    clients: dict[int, int] = {}  # connection fd -> pidfd, while the job's process waits
    requests: dict[int, _Request] = {}  # connection fd -> a request still being received
    stopping: dict[int, float] = {}  # pidfd -> when the job, sent SIGTERM, gets SIGKILL
    idle_since, closing = time.monotonic(), False
    while True:
        now = time.monotonic()
        deadlines = [*stopping.values(), *(request.deadline for request in requests.values())]
        if jobs or requests:
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
        elif closing:
            timeout = 0.0
        else:
            timeout = max(0.0, idle_seconds - (now - idle_since))
        ready = select.select([listener, *jobs, *clients, *requests], [], [], timeout)[0]
        now = time.monotonic()
        for pidfd, deadline in list(stopping.items()):
            if now >= deadline:
                del stopping[pidfd]
                _log(f"job {jobs[pidfd][2]} (pid {jobs[pidfd][0]}): still running {grace:g} s after SIGTERM; SIGKILL")
                _signal_group(jobs[pidfd][0], signal.SIGKILL)
        for fd, request in list(requests.items()):
            if now >= request.deadline:
                _log("dropped a request not received within its time")
                _drop(requests.pop(fd).connection, request.fds)
        if not ready and not jobs and not requests:
            if closing:
                break
            path.unlink(missing_ok=True)  # new jobs start a new server (or run cold); then drain what is queued
            closing = True
            continue
        for item in ready:
            if item is listener:
                connection, _ = listener.accept()
                connection.setblocking(False)
                requests[connection.fileno()] = _Request(connection, time.monotonic() + REQUEST_SECONDS)
            elif item in requests:
                request = requests[item]
                try:
                    complete = request.receive()
                except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
                    _log(f"dropped a broken request: {error}")
                    _drop(requests.pop(item).connection, request.fds)
                    continue
                if not complete:
                    continue
                del requests[item]
                inherited = [lock, listener, *(conn for _, conn, _, _ in jobs.values())]
                inherited += [other.connection for other in requests.values()]
                try:
                    started = _start(request, inherited, jobs)
                except Exception as error:  # one job's trouble must not end the server its other jobs run in
                    _log(f"could not take a job: {error!r}")
                    _drop(request.connection, request.fds)
                    started = None
                if started is not None:
                    pidfd, connection = started
                    clients[connection.fileno()] = pidfd
            elif item in jobs:
                stopping.pop(item, None)
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
                if gone:  # the job's process is gone (killed): so is its child, after its finally blocks
                    _log(f"job {script} (pid {pid}): its process ended; stopping it (SIGTERM)")
                    _signal_group(pid, signal.SIGTERM)
                    stopping[pidfd] = time.monotonic() + grace
    listener.close()
    _log("idle: exiting")


def _log(message: str) -> None:
    import time

    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


class _Request:
    """A job's request as it arrives on a non-blocking connection: an 8-byte size with the job's standard streams
    as descriptors, then the pickled request."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        self.connection, self.deadline = connection, deadline
        self.header, self.payload, self.fds = b"", bytearray(), []
        self.request: dict | None = None

    def receive(self) -> bool:
        """Read what has arrived; True once the request is whole (then in ``request``)."""
        import pickle

        try:
            if len(self.header) < 8:
                data, fds, _, _ = socket.recv_fds(self.connection, 8 - len(self.header), 3)
                self.fds += fds
                if not data:
                    raise OSError("the job hung up")
                self.header += data
                return False
            size = struct.unpack("!Q", self.header)[0]
            chunk = self.connection.recv(min(size - len(self.payload), 1 << 20))
        except BlockingIOError:
            return False
        if not chunk:
            raise OSError("short request")
        self.payload += chunk
        if len(self.payload) < size:
            return False
        self.request = pickle.loads(self.payload)
        self.connection.setblocking(True)
        return True


def _fork_hazard() -> str | None:
    """Why forking this server now would be unsafe, or None: a thread besides the main one (a fork copies only the
    calling thread, with any lock another thread held), or CUDA initialised (a child cannot use the context)."""
    import threading

    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = threading.active_count()
    if threads > 1:
        return f"the warm-start server runs {threads} threads, so it does not fork"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "CUDA is initialised in the warm-start server, so it does not fork"
    return None


def _start(request: _Request, inherited: list, jobs: dict) -> tuple[int, socket.socket] | None:
    """Fork the child of a received job; ``(pidfd, connection)``, or None where it could not start (its process then
    runs it cold, told why where the server knows)."""
    import signal
    import time

    connection, received, job = request.connection, request.fds, request.request
    hazard = _fork_hazard()
    if hazard is not None:
        _refuse(connection, received, f"{hazard} ({job['file']})")
        return None
    sys.stdout.flush()
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as error:
        _refuse(connection, received, f"could not fork for {job['file']} ({error})")
        return None
    if pid == 0:
        for handle in [*inherited, connection]:
            handle.close()
        for pidfd in jobs:
            os.close(pidfd)
        code = 1
        try:
            code = _run_job(job, received, server)
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
        _log(f"could not start {job['file']} ({error})")
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        _drop(connection, received)
        return None
    for fd in received:
        os.close(fd)
    jobs[pidfd] = (pid, connection, job["file"], time.monotonic())
    return pidfd, connection


def _refuse(connection: socket.socket, received: list[int], why: str) -> None:
    _log(f"{why}: it runs cold")
    try:
        connection.sendall(REFUSED + why.encode()[:900])
    except OSError:
        pass
    _drop(connection, received)


def _drop(connection: socket.socket, received: list[int]) -> None:
    for fd in received:
        os.close(fd)
    connection.close()


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


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
    signal.signal(signal.SIGTERM, _terminate)  # the job's finally blocks run, as the server stops it
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
    if "torch" in sys.modules:  # what torch's import reads, cold (unset: OpenMP's default, every CPU it may use)
        count = int(threads) if threads.isdigit() and int(threads) > 0 else len(os.sched_getaffinity(0))
        sys.modules["torch"].set_num_threads(count)
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
