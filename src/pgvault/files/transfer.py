"""What parallel transfers share: a memory budget, progress reports, cancellation.

Memory stays bounded whatever the number of objects: every worker reserves the bytes it
will hold (an object read whole, or a stream's buffers) from one :class:`Budget` before
it reads, and waits while the budget is spent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from typing import TypeVar

from pgvault.errors import PgvaultError

MiB = 1024 * 1024
T = TypeVar("T")


class Cancelled(PgvaultError):
    """The caller asked the transfer to stop (nothing half-written is left visible)."""


SWITCH_INTERVAL = 0.0005
"""Seconds between the interpreter's GIL hand-overs during a transfer (default 0.005)."""
_switch_lock = threading.Lock()
_switch_users = 0
_switch_before = 0.005


@contextmanager
def quick_switching() -> Iterator[None]:
    """Hand the GIL over more often while a transfer runs: its threads mostly wait on
    sockets and files, and each wake-up otherwise waits up to 5 ms for the GIL (the
    "convoy effect"), which with 8 workers made transfers several times slower. Restored
    once the last transfer of the process ends."""
    global _switch_users, _switch_before
    with _switch_lock:
        if _switch_users == 0:
            _switch_before = sys.getswitchinterval()
            sys.setswitchinterval(min(SWITCH_INTERVAL, _switch_before))
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_before)


MMAP_THRESHOLD = 256 * 1024
"""Bytes from which glibc serves an allocation with its own mapping (see :func:`tune_allocator`)."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number
_tuned = False


def tune_allocator() -> None:
    """With glibc, serve allocations of :data:`MMAP_THRESHOLD` bytes and more with their
    own mapping, returned to the system when freed. By default glibc raises that threshold
    as big buffers are freed, after which each worker thread's arena keeps the buffers it
    once held: a transfer of 8 threads then held ~100 MiB more than its budget (measured:
    peak RSS 250 -> 150 MiB on bench/bench_files.py). Once per process; elsewhere a no-op.
    """
    global _tuned
    if _tuned or not sys.platform.startswith("linux"):
        return
    _tuned = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        pass


class Budget:
    """A counting budget of bytes held in memory by all workers at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        """Reserve ``amount`` bytes (at most the whole budget) for the block; waits while
        other workers hold too much."""
        amount = max(0, min(amount, self.total))
        with self._cond:
            self._cond.wait_for(lambda: self._used + amount <= self.total)
            self._used += amount
        try:
            yield
        finally:
            with self._cond:
                self._used -= amount
                self._cond.notify_all()


@dataclass(frozen=True)
class TransferProgress:
    """A progress report. ``*_total`` grow while ``listing_done`` is False (the listing
    is read as the transfer goes); bytes are object bytes, ``rate`` bytes/s (recent),
    ``eta_seconds`` once the totals are known."""

    phase: str
    objects_done: int
    objects_total: int
    bytes_done: int
    bytes_total: int
    listing_done: bool
    rate: float | None = None
    eta_seconds: float | None = None


ProgressHook = Callable[[TransferProgress], None]


class Meter:
    """Counts done/total objects and bytes from any thread; reports at most every
    ``interval`` seconds (and always when asked to force)."""

    def __init__(self, phase: str, hook: ProgressHook | None, interval: float = 0.25) -> None:
        self._hook = hook
        self._interval = interval
        self._lock = threading.Lock()
        self._state = TransferProgress(phase, 0, 0, 0, 0, False)
        self._started = time.monotonic()
        self._last = 0.0

    def add_total(self, objects: int, size: int) -> None:
        """More work found by the listing."""
        with self._lock:
            s = self._state
            self._state = replace(
                s, objects_total=s.objects_total + objects, bytes_total=s.bytes_total + size
            )

    def add_done(self, objects: int, size: int) -> None:
        """Work finished (``size`` bytes may come before the object is done)."""
        with self._lock:
            s = self._state
            self._state = replace(
                s, objects_done=s.objects_done + objects, bytes_done=s.bytes_done + size
            )

    def listing_finished(self) -> None:
        """The totals are final now."""
        with self._lock:
            self._state = replace(self._state, listing_done=True)
        self.report(force=True)

    @property
    def state(self) -> TransferProgress:
        """The current counts, with rate and ETA."""
        with self._lock:
            s = self._state
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = s.bytes_done / elapsed if s.bytes_done else None
        eta = None
        if s.listing_done and rate:
            eta = max(0.0, (s.bytes_total - s.bytes_done) / rate)
        return replace(s, rate=rate, eta_seconds=eta)

    def report(self, force: bool = False) -> None:
        """Call the hook with the current state (throttled unless ``force``)."""
        if self._hook is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        self._hook(self.state)


def check_cancel(cancel: threading.Event | None, stop: threading.Event | None = None) -> None:
    """Raise :class:`Cancelled` once ``cancel`` (the caller's) or ``stop`` (a sibling
    worker failed) is set."""
    if (cancel is not None and cancel.is_set()) or (stop is not None and stop.is_set()):
        raise Cancelled("file transfer cancelled")


def drain_in_order(
    pending: deque[Future[T] | T], keep: int, waiting: Callable[[], None]
) -> Iterator[T]:
    """Pop and yield the results at the head of ``pending`` in order: values as they are,
    futures once done (their error is raised here). Stops at an unfinished future while
    at most ``keep`` items are pending; otherwise waits for it, calling ``waiting`` (which
    may raise, e.g. :class:`Cancelled`) about every 0.25 s."""
    while pending:
        head = pending[0]
        if isinstance(head, Future):
            if not head.done() and len(pending) <= keep:
                return
            while not head.done():
                waiting()
                # On the future's own condition (wait() would add a waiter to it each time)
                with suppress(TimeoutError):
                    head.exception(timeout=0.25)
            value: T = head.result()
        else:
            value = head
        pending.popleft()
        yield value


def cancel_pending(pending: deque[Future[T] | T]) -> None:
    """Cancel the futures of ``pending`` that have not started."""
    for item in pending:
        if isinstance(item, Future):
            item.cancel()
