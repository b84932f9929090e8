"""The write combiner: writer processes on one host send their prepared writes through
a leader, which applies several in one call (``PostgresStorage(combine=True)``).

Why: with many writer processes on a few cores, PostgreSQL's CPU per write is mostly
per call (a wake-up, an executor start, a lock hand-off, a commit), not per row
(BENCHMARKS.md ``pgw12``). A leader gathering the writes of its followers and
sending K of them per ``CALL engram_append_many`` (migration 0040) pays that once
per K writes.

How:

* *Leaders.* Per host, OS user and database URL there are ``leaders`` slots. A
  process takes slot ``i`` by an exclusive ``flock`` on ``<dir>/<db>-<i>.lock``
  (released by the kernel when the process dies, however it dies) and then serves
  ``<dir>/<db>-<i>.sock``: a thread reads requests, ``connections`` sender threads
  each take up to ``max_writes`` queued writes, apply them in one call on their own
  connection and answer each. A leader is also a writer: its own writes join its
  queue. ``<dir>`` is a directory only this OS user can reach (mode 0700, owned by
  the user, checked before use; and each peer's uid is checked on accept).
* *Followers.* A writer sends its write (the arguments of ``engram_append`` and a
  token) to the leader of slot ``pid % leaders``, or any other live one, and waits
  at most ``wait_s`` for the answer. When no leader answers (none running, the
  socket refused, the leader died, it is slow, or its call failed as a whole), the
  writer sends the same write itself, with the same token: never lost.
* *The lost answer.* A write sent twice (by a leader that died or was slow, and by
  its writer) is applied once: the procedure checks the token under the chain lock
  and answers the second with the first's results (``replayed``). So a write is
  acknowledged exactly when it committed, and only once in the log.

A write's own error (a configuration that changed, a constraint) comes back as
that write's answer, :class:`Refused`; the writes combined with it are not failed.

Defaults (BENCHMARKS.md ``pgw13``): one leader on one connection. With 16 writers
on two cores that gathered ~6 writes per call and about halved PostgreSQL's CPU per
write; two leaders, or two connections, gathered 2-4 per call and the procedure's
per-call cost then ate the saving. A leader slower than ``wait_s`` costs its writers
a direct call each (with the same token), never a write.
Only prepared writes are combined: a write that reads (an idempotency key, a
compare-and-swap, a contradiction check) runs under the chain lock as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import selectors
import socket
import stat
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import PoolTimeout

from engramdb.errors import InvalidInput
from engramdb.storage.postgres.append_call import call_append
from engramdb.storage.postgres.append_many import MAX_DIMS, Answer, call_many, dims, new_token
from engramdb.storage.postgres.pgarray import length_prefixed

if TYPE_CHECKING:
    from engramdb.storage.postgres import PostgresStorage

__all__ = ["Combiner", "Refused", "combine_options", "private_dir"]

_LEN = struct.Struct(">i")
_FRAME = struct.Struct(">I")
_TOKEN_SIZE = 49  # 16 digits, '-', 32 hex
_RETRY = b"retry"  # a leader's answer when its call failed as a whole: send it yourself


_OPTIONS = {"leaders": int, "connections": int, "wait_s": float, "max_writes": int}


def combine_options(combine: object) -> dict[str, Any]:
    """``combine=``'s value as :class:`Combiner`'s keyword arguments (True: the defaults).

    Raises:
        InvalidInput: an option the combiner does not take, or not a positive number.
    """
    if combine is True:
        return {}
    if not isinstance(combine, Mapping):
        raise InvalidInput("combine takes True or a dict of leaders, connections, wait_s "
                           "and max_writes")
    unknown = sorted(set(map(str, combine)) - set(_OPTIONS))
    if unknown:
        raise InvalidInput(f"unknown combine options {unknown}; it takes "
                           f"{', '.join(_OPTIONS)}")
    out: dict[str, Any] = {}
    for name, value in combine.items():
        kind = _OPTIONS[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0 \
                or (kind is int and value != int(value)):
            raise InvalidInput(f"combine option {name} must be a positive "
                               f"{'whole number' if kind is int else 'number of seconds'}, "
                               f"not {value!r}")
        out[name] = kind(value)
    return out


class Refused(Exception):
    """The procedure refused this write alone (its SQLSTATE, message and detail)."""

    def __init__(self, state: str, message: str, detail: str) -> None:
        super().__init__(message or state)
        self.state, self.message, self.detail = state, message, detail

    def as_driver_error(self) -> psycopg.Error:
        """The psycopg error the same failure raises on a direct call (by SQLSTATE)."""
        try:
            cls: type[psycopg.Error] = pg_errors.lookup(self.state)
        except KeyError:
            cls = psycopg.DatabaseError
        return cls(self.message or self.state)


def _unknown(detail: str) -> psycopg.OperationalError:
    """The error for a write whose outcome is unknown: its leader got it and did not
    answer, and its own call failed, so the leader's may still apply it. Raised as a
    lost connection is (no SQLSTATE), which the engine reports as an unknown outcome:
    retry with an idempotency key."""
    return psycopg.OperationalError(
        f"a combined write's leader did not answer and its direct call failed ({detail})")


def private_dir() -> str | None:
    """A directory only this OS user can reach, for the leaders' sockets: created mode
    0700 if missing; None if it exists but is not a directory owned by this user with
    no access for anyone else, or where a socket's peer cannot be checked (no
    ``SO_PEERCRED``: not Linux); then nothing is combined."""
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(base) / f"engramdb-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid()
            or stat.S_IMODE(st.st_mode) & 0o077):
        return None
    return str(path)


def _pack(fields: Sequence[bytes | None]) -> bytes:
    body = b"".join(_LEN.pack(-1) if f is None else _LEN.pack(len(f)) + f for f in fields)
    return _FRAME.pack(len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("closed")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _recv_frame(sock: socket.socket) -> list[bytes | None]:
    size = _FRAME.unpack(_recv_exact(sock, 4))[0]
    return length_prefixed(_recv_exact(sock, size))


def _answer_fields(token: bytes, answer: Answer | None) -> list[bytes | None]:
    if answer is None:
        return [token, _RETRY]
    return [token, answer.state.encode(), *answer.results(), answer.message.encode(),
            answer.detail.encode()]


def _answer_from(fields: Sequence[bytes | None]) -> Answer | None:
    if len(fields) < 8 or fields[1] == _RETRY:
        return None
    seq, digest, tx, rec, cfg = (f or b"" for f in fields[2:7])
    return Answer(int(seq), digest.decode(), int(tx), int(rec), int(cfg),
                  (fields[1] or b"").decode(), (fields[7] or b"").decode(),
                  (fields[8] or b"").decode() if len(fields) > 8 else "")


class Combiner:
    """One process's side of the combiner for one :class:`PostgresStorage`."""

    def __init__(self, store: PostgresStorage, *, leaders: int = 1, connections: int = 1,
                 wait_s: float = 0.5, max_writes: int = 16) -> None:
        self._store = store
        self._dir = private_dir()
        self._key = hashlib.sha256(store._conninfo.encode()).hexdigest()[:16]
        self._slots = max(1, int(leaders))
        self._connections = max(1, int(connections))
        self._wait = float(wait_s)
        self._max = max(1, int(max_writes))
        self._local = threading.local()  # this thread's socket to a leader: (slot, socket)
        self._leader: _Leader | None = None
        self._lock = threading.Lock()
        self._closed = False
        # What happened to this process's writes (for tests and measurements).
        # leader: answered by a leader; direct: sent itself; fallback: of those, after a
        # leader did not answer (timeout: not within wait_s); replayed: answered with an
        # earlier call's results; calls, sent: calls this process made as a leader, and
        # the writes in them.
        self.counts = {"leader": 0, "direct": 0, "fallback": 0, "timeout": 0, "replayed": 0,
                       "calls": 0, "sent": 0}

    # -- a write -----------------------------------------------------------------------

    def submit(self, args: Sequence[bytes | None]) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """Apply one prepared write (the arguments of ``engram_append``); its results
        (seq, hash, tx, recorded_at, config_tx as text).

        Raises:
            Refused: the procedure refused this write (nothing of it was applied).
            psycopg.Error: the direct call failed (see :func:`call_many`).
        """
        token = new_token()
        answer = None
        self._local.sent = False  # whether a leader got this write (it may still apply it)
        if self._dir is not None and not self._closed and dims(args) <= MAX_DIMS:
            answer = self._via_leader(token, args)
        if answer is None:
            answer = self._direct(token, args)
        else:
            self.counts["leader"] += 1
        if answer.state == "replayed":
            self.counts["replayed"] += 1
        if answer.ok:
            return answer.results()
        if answer.state == "EG003":  # its token expired unapplied: no call will apply it
            return self._plain(args)
        if answer.state != "EG001" and getattr(self._local, "sent", False):
            # Refused here, but a leader holds it too: only a configuration that changed
            # (config_tx never comes back) refuses it for every call for certain.
            raise _unknown(f"{answer.state}: {answer.message}")
        raise Refused(answer.state, answer.message, answer.detail)

    def _direct(self, token: str, args: Sequence[bytes | None]) -> Answer:
        """This write sent by this process itself, with its token."""
        self.counts["direct"] += 1
        try:
            pool = self._store._get_pool()
            conn = pool.getconn()
            try:
                return call_many(conn, [(token, args)], self._store._vector_oid or 0)[0]
            finally:
                pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            if getattr(self._local, "sent", False):
                # Not applied by this call; but a leader got it and may still apply it.
                raise _unknown(str(exc)) from exc
            raise

    def _plain(self, args: Sequence[bytes | None]) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        pool = self._store._get_pool()
        conn = pool.getconn()
        try:
            seq, digest, tx, rec, cfg = call_append(conn, args, self._store._vector_oid or 0)
            return seq, digest, tx, rec, cfg
        finally:
            pool.putconn(conn)

    def _via_leader(self, token: str, args: Sequence[bytes | None]) -> Answer | None:
        """The leader's answer, or None: send it yourself (with the same token)."""
        sock = self._socket() if self._leader is None else None
        leader = self._leader
        if leader is not None:  # this process leads: its writes join its own queue
            req = _Request(token.encode(), args, None)
            self._local.sent = leader.put(req)
            if self._local.sent and req.done.wait(self._wait) and req.answer is not None:
                return req.answer
            self.counts["timeout"] += not req.done.is_set()
            self.counts["fallback"] += 1
            return None
        if sock is None:
            return None
        try:
            self._local.sent = True
            sock.sendall(_pack([token.encode(), *args]))
            fields = _recv_frame(sock)
        except TimeoutError:  # the leader is slow: its answer is not waited for
            fields = []
            self.counts["timeout"] += 1
        except (OSError, ConnectionError, struct.error):  # it went away
            fields = []
        if not fields or fields[0] != token.encode():  # never another write's answer
            self._drop_socket()
            self.counts["fallback"] += 1
            return None
        answer = _answer_from(fields)
        if answer is None:
            self.counts["fallback"] += 1
        return answer

    # -- followers' sockets -------------------------------------------------------------

    def _path(self, slot: int, ext: str) -> str:
        return str(Path(self._dir or "") / f"{self._key}-{slot}.{ext}")

    def _socket(self) -> socket.socket | None:
        """This thread's connection to a leader: its own slot's (``pid % leaders``), or,
        if that slot has no leader, this process takes it (and None is returned); if it
        cannot (a leader is starting there), another slot's; None if none answers."""
        held = getattr(self._local, "sock", None)
        if held is not None:
            return held
        first = os.getpid() % self._slots
        for i in range(self._slots):
            slot = (first + i) % self._slots
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self._wait)
            try:
                sock.connect(self._path(slot, "sock"))
            except OSError:
                sock.close()
                if i == 0 and self._claim(slot) is not None:
                    return None
                continue
            self._local.sock = sock
            return sock
        return None

    def _drop_socket(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- leading ----------------------------------------------------------------------

    def _claim(self, slot: int) -> _Leader | None:
        """Lead ``slot`` if no process does (its lock is free)."""
        with self._lock:
            if self._leader is not None or self._closed:
                return self._leader
            fd = os.open(self._path(slot, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return None
            try:
                self._leader = _Leader(self._store, self._path(slot, "sock"), fd,
                                       self._connections, self._max, self.counts)
            except OSError:
                os.close(fd)
                return None
            return self._leader

    def close(self) -> None:
        """Stop leading (the writes queued are still sent and answered) and following."""
        self._closed = True
        with self._lock:
            leader, self._leader = self._leader, None
        if leader is not None:
            leader.close()
        self._drop_socket()

    def forget(self) -> None:
        """In a forked child: the parent's leader is not this process's."""
        leader, self._leader = self._leader, None
        if leader is not None:
            leader.disown()
        self._local = threading.local()


class _Peer:
    """A follower's connection to this leader: at most one request outstanding.
    ``dead``: the reader unregistered it; whoever sees it not busy closes it."""

    __slots__ = ("busy", "dead", "lock", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.busy = False
        self.dead = False


class _Request:
    __slots__ = ("answer", "args", "done", "peer", "token")

    def __init__(self, token: bytes, args: Sequence[bytes | None], peer: _Peer | None) -> None:
        self.token = token
        self.args = args
        self.peer = peer
        self.done = threading.Event()
        self.answer: Answer | None = None

    def reply(self, answer: Answer | None) -> None:
        peer = self.peer
        if peer is None:
            self.answer = answer
            self.done.set()
            return
        with peer.lock:
            if not peer.dead:
                # A failed send (the writer went away) is left to the reader, which
                # sees the socket close and lets it go.
                with contextlib.suppress(OSError):
                    peer.sock.sendall(_pack(_answer_fields(self.token, answer)))
            peer.busy = False
            if peer.dead:  # the reader gave it up while this was outstanding
                with contextlib.suppress(OSError):
                    peer.sock.close()


class _Leader:
    """This process leading one slot: a reader thread and sender threads."""

    def __init__(self, store: PostgresStorage, path: str, lock_fd: int, connections: int,
                 max_writes: int, counts: dict[str, int]) -> None:
        self._store = store
        self._counts = counts
        self._path = path
        self._lock_fd = lock_fd
        self._max = max_writes
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        # A dead leader's socket: this process holds the slot's lock now.
        Path(path).unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        Path(path).chmod(0o600)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._threads = [threading.Thread(target=self._read, name="engramdb-combiner-read",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._send, name="engramdb-combiner-send",
                                           daemon=True) for _ in range(connections)]
        for t in self._threads:
            t.start()

    def put(self, req: _Request) -> bool:
        with self._cond:
            if self._stopping:
                return False
            self._queue.append(req)
            self._cond.notify()
        return True

    def _read(self) -> None:
        uid = os.getuid()
        while not self._stopping:
            try:
                events = self._selector.select(0.2)
            except (OSError, ValueError):
                return
            for key, _ in events:
                if key.data is None:
                    self._accept(uid)
                else:
                    self._receive(key.data)

    def _accept(self, uid: int) -> None:
        try:
            sock, _ = self._listener.accept()
        except OSError:
            return
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != uid:  # only this OS user's processes
            sock.close()
            return
        sock.setblocking(True)
        sock.settimeout(5.0)  # a frame, once it starts, arrives whole
        self._selector.register(sock, selectors.EVENT_READ, _Peer(sock))

    def _receive(self, peer: _Peer) -> None:
        try:
            fields = _recv_frame(peer.sock)
            ok = len(fields) == 23 and len(fields[0] or b"") == _TOKEN_SIZE and not peer.busy
        except (OSError, ConnectionError, struct.error):
            fields, ok = [], False
        if not ok:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(peer.sock)
            with peer.lock:
                peer.dead = True
                if not peer.busy:
                    with contextlib.suppress(OSError):
                        peer.sock.close()
            return
        with peer.lock:
            peer.busy = True
        if not self.put(_Request(fields[0] or b"", fields[1:], peer)):
            _Request(fields[0] or b"", fields[1:], peer).reply(None)

    def _batch(self) -> list[_Request] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            batch, size = [first], dims(first.args)
            barrier = (first.args[20], first.args[21])
            keep: list[_Request] = []
            while self._queue and len(batch) < self._max:
                req = self._queue.popleft()
                more = dims(req.args)
                if (req.args[20], req.args[21]) != barrier or size + more > MAX_DIMS:
                    keep.append(req)
                    continue
                batch.append(req)
                size += more
            self._queue.extendleft(reversed(keep))
            return batch

    def _send(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        store = self._store
        while True:
            batch = self._batch()
            if batch is None:
                break
            answers: list[Answer] | list[None] = [None] * len(batch)
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(store._conninfo, autocommit=True,
                                           **store._connect_kwargs)
                    store._configure(conn)
                answers = call_many(conn, [(r.token.decode(), r.args) for r in batch],
                                    store._vector_oid or 0)
                self._counts["calls"] += 1
                self._counts["sent"] += len(batch)
            except Exception:  # noqa: BLE001 - the whole call failed: each writer sends its own
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            for req, answer in zip(batch, answers, strict=True):
                req.reply(answer)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        """Stop taking writes, send and answer those queued, then let the slot go."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        Path(self._path).unlink(missing_ok=True)
        for t in self._threads:
            t.join(timeout=30)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        os.close(self._lock_fd)

    def disown(self) -> None:
        """In a forked child: close the inherited descriptors, leave the parent's slot."""
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)
        with contextlib.suppress(OSError):
            self._listener.close()
