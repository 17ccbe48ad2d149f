"""The unit of work: one SQLite connection (WAL, synchronous=FULL), one writer thread, one transaction per write.

Every statement of the store runs on the writer thread, so the event loop never blocks and writes never
interleave. A write that must be atomic (a lane step: its state, records, audit and outbox rows) is one
`transaction()`. Storage faults (disk full, read-only, I/O error, locked) become StorageUnavailable after a
clean rollback, are reported to `health` (one log line when they start, one when they end), and end only when
a probe that needs real disk space succeeds and the backlog kept in memory meanwhile (barrier audit rows) is
written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import sqlite3
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, TypeVar

from lanectl.adapters.store.faults import DatabaseUnusable, StoreError, storage_fault
from lanectl.adapters.store.schema import migrate
from lanectl.service.ports import StorageUnavailable
from lanectl.service.storage import StorageHealth
from lanectl.startup import EX_CANTCREAT, StartupError, os_reason

log = logging.getLogger("lanectl.store")
T = TypeVar("T")

# SQLite's own checkpoint runs inside the COMMIT that pushes the WAL past its threshold, so one lane decision in
# ~60 (a decision writes ~16 pages) waited for ~1000 pages copied into the database file and synced before its
# OPEN. The store checkpoints by itself instead, every CHECKPOINT_EVERY_WRITES writes, as the next job on the
# writer thread once the write's caller has its answer; SQLite's own stays only as a backstop. Checkpointing
# early also keeps the WAL small and reused from its start: a commit overwrites blocks the WAL already has
# (one data sync) instead of growing the file (a data sync plus the file system's journal).
CHECKPOINT_EVERY_WRITES = 32
AUTOCHECKPOINT_BACKSTOP_PAGES = 4000


class Backlog(Protocol):
    """Writes kept in memory while storage was down; written first when it is back (writer thread)."""

    def waiting(self) -> bool: ...

    def flush_sync(self) -> None: ...


class UnitOfWork:
    def __init__(self, path: str | Path, *, probe_bytes: int = 256 * 1024, probe_interval_s: float = 5.0) -> None:
        self.path = Path(path)
        self.pool: Executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lanectl-store")
        self._conn: Optional[sqlite3.Connection] = None
        self.health = StorageHealth(str(self.path))
        self.probe_bytes = probe_bytes  # free space a recovery probe must find (a file of this size, fsynced)
        self.probe_interval_s = probe_interval_s  # while faulted: probe this often (writes in between fail fast)
        self.backlog: Optional[Backlog] = None
        # Writer-thread state: the current fault (None while writable) and when it was last probed.
        self._fault: Optional[str] = None
        self._probed_at = 0.0
        self._writes_since_checkpoint = 0  # on the loop

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    # --- lifecycle -------------------------------------------------------------------------------------------
    async def open(self, startup_writes: Sequence[Callable[[], None]] = (),
                   loads: Sequence[Callable[[], None]] = ()) -> None:
        """Create or open the database. StartupError (EX_CANTCREAT) names the path when it cannot be: a
        read-only or missing directory that cannot be made, a file in the way, no permission, not a database.
        Then `startup_writes` (a storage fault there starts the store faulted, it does not stop the daemon)
        and `loads` (what the repositories keep in memory), all on the writer thread."""
        def _open() -> None:
            self._connect_sync()
            for write in startup_writes:
                try:
                    write()
                except sqlite3.Error as exc:
                    reason = storage_fault(exc)
                    if reason is None:
                        raise
                    self._fault, self._probed_at = reason, time.monotonic()
                    self.health.failed(reason)
            for load in loads:
                load()
        await self.run(_open)

    def _connect_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = "exists but is not a directory" if isinstance(exc, (FileExistsError, NotADirectoryError)) \
                else f"cannot be created: {os_reason(exc)}"
            raise StartupError(f"database directory {self.path.parent}", reason, EX_CANTCREAT) from None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StartupError(f"database {self.path}", f"cannot be opened: {exc}", EX_CANTCREAT) from None
        try:
            conn.row_factory = sqlite3.Row
            # The first statements touch the file: a read-only directory or file fails here, not in connect().
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # records, outbox and inbox must survive power loss
            conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_BACKSTOP_PAGES}")  # CHECKPOINT_EVERY_WRITES
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            migrate(conn)
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            conn.close()
            raise StartupError(f"database {self.path}", f"cannot be opened for writing: {exc}",
                               EX_CANTCREAT) from None
        except StoreError as exc:
            conn.close()
            raise DatabaseUnusable(f"database {self.path}", str(exc), EX_CANTCREAT) from None
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None and self.health.queued:
            await self.probe()  # last chance for the backlog kept in memory
            if self.health.queued:
                log.error("store: closing with %d barrier audit row(s) never written (storage still unavailable)",
                          self.health.queued)

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await self.run(_close)
        self.pool.shutdown(wait=True)

    # --- reads and writes -------------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """A read (or the lifecycle) on the writer thread; a storage fault surfaces as StorageUnavailable."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._reading, fn, *args)

    def _reading(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            raise StorageUnavailable(reason) from exc

    async def write(self, fn: Callable[..., T], *args: Any, probe: bool = False) -> T:
        """Every write goes through here: on the writer thread, after any backlog kept from an outage, with its
        outcome reported to `health`. While faulted, writes fail fast between probes; `probe` forces one."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, self._writing, probe, fn, *args)
        finally:
            self._count_write(loop)

    def submit(self, fn: Callable[..., T], *args: Any,
               then: Optional[Callable[[T], None]] = None) -> "asyncio.Future[T]":
        """`write` for the write ahead of an OPEN: handed to the writer thread now (no loop turn first), and
        finished whatever its waiter does — `then(result)` runs on the loop once it succeeded, before the
        returned future answers (cancelling that future only stops the wait). One hop back, not three."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()
        job = self.pool.submit(self._writing, False, fn, *args)

        def answered(job: "concurrent.futures.Future[T]") -> None:  # on the loop
            self._count_write(loop)
            exc = job.exception() if not job.cancelled() else asyncio.CancelledError()
            if exc is None and then is not None:
                try:
                    then(job.result())
                except Exception as failed:  # a bug: its waiter hears of it rather than waiting for ever
                    exc = failed
            if answer.done():  # its waiter gave up: the write and `then` happened all the same
                return
            if exc is None:
                answer.set_result(job.result())
            else:
                answer.set_exception(exc)

        def done(job: "concurrent.futures.Future[T]") -> None:  # on the writer thread
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(answered, job)
        job.add_done_callback(done)
        return answer

    def _count_write(self, loop: asyncio.AbstractEventLoop) -> None:
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= CHECKPOINT_EVERY_WRITES and self._conn is not None:
            self._writes_since_checkpoint = 0
            # queued behind this write, not awaited: the caller (a lane about to send its OPEN) goes on
            with contextlib.suppress(RuntimeError):  # the store is closing: its pool takes no more jobs
                loop.run_in_executor(self.pool, self._checkpoint_sync).add_done_callback(_checkpoint_done)

    def _checkpoint_sync(self) -> None:
        """Copy the WAL into the database file (PASSIVE: never waits for a reader); the next write then starts
        the WAL again from its beginning. Skipped while storage is faulted."""
        if self._conn is not None and self._fault is None:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _writing(self, probe: bool, fn: Callable[..., T], *args: Any) -> T:
        try:
            if self._fault is not None or (self.backlog is not None and self.backlog.waiting()):
                self._recover_sync(force=probe)
                self.health.succeeded()  # the backlog is written first, then "recovered" is said
            result = fn(*args)
        except StorageUnavailable as exc:
            self._fault = exc.reason
            self.health.failed(exc.reason)
            raise
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            self._fault = reason
            self._probed_at = time.monotonic()
            self.health.failed(reason)
            raise StorageUnavailable(reason) from exc
        self.health.succeeded()
        return result

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any error a ROLLBACK only if SQLite still has the transaction open (it
        has rolled back by itself on SQLITE_FULL / IOERR), and a failing ROLLBACK never hides the first error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.warning("store: rollback failed after a failed write: %s", exc)
            raise

    # --- storage faults: probe and recovery ---------------------------------------------------------------------
    def _recover_sync(self, force: bool = False) -> None:
        """Writer thread, while faulted (or a backlog waits): fail fast between probes; else probe for real space
        and write the backlog first. Raises StorageUnavailable while storage is still down."""
        if not force and self._fault is not None and time.monotonic() - self._probed_at < self.probe_interval_s:
            raise StorageUnavailable(self._fault)
        self._probed_at = time.monotonic()
        try:
            self._probe_space_sync()
            if self.backlog is not None and self.backlog.waiting():
                self.backlog.flush_sync()
            else:
                # still take the write lock once: a database locked by another process is not recovered
                with self.transaction():
                    pass
        except (sqlite3.Error, OSError) as exc:
            reason = storage_fault(exc)
            if reason is None:
                raise
            raise StorageUnavailable(reason) from exc
        self._fault = None

    def _probe_space_sync(self) -> None:
        """A full disk still takes writes into pages SQLite allocated before, so a small commit proves little:
        write `probe_bytes` of new data beside the database, fsync it, remove it."""
        probe = self.path.with_name(self.path.name + ".space-probe")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            chunk = b"\0" * 65536
            left = self.probe_bytes
            while left > 0:
                left -= os.write(fd, chunk[:left])
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    async def probe(self) -> bool:
        """While faulted: try to recover now (a write that needs real space, then the backlog)."""
        if self.health.ok and not self.health.queued:
            return True
        try:
            await self.write(lambda: None, probe=True)
        except StorageUnavailable:
            return False
        return True

    async def watch(self) -> None:
        """Runs with the daemon: probes every `probe_interval_s` while storage is faulted, so it recovers (and
        says so) without waiting for the next write. Never ends on its own."""
        while True:
            await asyncio.sleep(self.probe_interval_s)
            if self._conn is None:
                continue
            try:
                await self.probe()
            except Exception:  # the watcher must outlive anything the probe meets
                log.exception("store: recovery probe failed unexpectedly")


def _checkpoint_done(done: "asyncio.Future[None]") -> None:
    exc = done.exception() if not done.cancelled() else None
    if exc is not None:  # a failed checkpoint loses nothing (the WAL keeps every commit); the next one retries
        log.debug("store: checkpoint failed: %s", exc)
