"""Background jobs: long work in a worker thread that never touches the UI.

A :class:`Job` runs ``fn(job, *args, **kwargs)`` in a daemon thread. The function reports
progress through :meth:`Job.report`, can publish intermediate results (training curves, sample
grids) with :meth:`Job.publish`, and should poll :attr:`Job.cancelled` to stop early. A UI reads
:meth:`Job.snapshot` on a timer; nothing here knows about Streamlit.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Job", "JobSnapshot", "JobRegistry"]


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state."""

    name: str
    status: str  # "running" | "done" | "failed" | "cancelled"
    done: float
    total: float
    message: str
    elapsed: float
    error: str | None
    published: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return 0.0 if self.total <= 0 else min(1.0, max(0.0, self.done / self.total))

    @property
    def finished(self) -> bool:
        """Whether the job stopped (for any reason)."""
        return self.status != "running"

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far; None while there is too little to go on (under
        2 % done or 2 s elapsed) and once the job has stopped."""
        f = self.fraction
        if self.finished or f < 0.02 or f >= 1.0 or self.elapsed < 2.0:
            return None
        return self.elapsed * (1.0 - f) / f

    def describe(self) -> str:
        """One line for a progress bar: message, elapsed time and, when known, time left."""
        text = f"{self.message} · {_clock(self.elapsed)}"
        if self.finished:
            return f"{text} · {self.status}"
        eta = self.eta
        return text + (f" · about {_clock(eta)} left" if eta is not None else "")


def _clock(seconds: float) -> str:
    """"42 s", "3 min 05 s", "1 h 02 min"."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Job:
    """One unit of background work.

    Parameters
    ----------
    name : str
        Identifier shown to the user.
    fn : callable
        Called as ``fn(job, *args, **kwargs)`` in the worker thread; its return value becomes
        :attr:`result`.
    """

    def __init__(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.name = name
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._done, self._total, self._message = 0.0, 1.0, "starting"
        self._status, self._error = "running", None
        self._published: dict[str, Any] = {}
        self.result: Any = None
        self._start = time.monotonic()
        self._end: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"job-{name}", daemon=True)

    def start(self) -> Job:
        """Start the worker thread; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            result = self._fn(self, *self._args, **self._kwargs)
        except BaseException as exc:  # the UI must learn about every failure
            with self._lock:
                self._status = "cancelled" if self._cancel.is_set() else "failed"
                self._error = f"{type(exc).__name__}: {exc}"
                self._traceback = traceback.format_exc()
        else:
            with self._lock:
                self.result = result
                self._status = "cancelled" if self._cancel.is_set() else "done"
                self._done = self._total
        finally:
            self._end = time.monotonic()

    # ---------------------------------------------------------------- called by the worker
    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Record progress ``done`` out of ``total`` with an optional message."""
        with self._lock:
            self._done = float(done)
            if total is not None:
                self._total = float(total)
            if message is not None:
                self._message = message

    def publish(self, **items: Any) -> None:
        """Make intermediate results (curves, sample images) visible to readers."""
        with self._lock:
            self._published.update(items)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called; the worker should stop soon after."""
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        """The event set by :meth:`cancel` (to pass to library loops)."""
        return self._cancel

    # ---------------------------------------------------------------- called by readers
    def cancel(self) -> None:
        """Ask the worker to stop."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job stops; returns whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        """The job's state, copied under the lock."""
        with self._lock:
            end = self._end if self._end is not None else time.monotonic()
            return JobSnapshot(self.name, self._status, self._done, self._total, self._message,
                               end - self._start, self._error, dict(self._published))


class JobRegistry:
    """Thread-safe map of named jobs (one live job per name)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Start ``fn`` as job ``name`` unless one with that name is still running."""
        with self._lock:
            old = self._jobs.get(name)
            if old is not None and not old.snapshot().finished:
                return old
            job = Job(name, fn, *args, **kwargs)
            self._jobs[name] = job
        return job.start()

    def get(self, name: str) -> Job | None:
        """The job called ``name``, if any."""
        with self._lock:
            return self._jobs.get(name)

    def forget(self, name: str) -> None:
        """Drop a finished job from the registry."""
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and job.snapshot().finished:
                del self._jobs[name]

    def all(self) -> list[Job]:
        """Every job still registered, running or finished, oldest first."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j._start)

    def running(self) -> list[Job]:
        """Jobs that have not finished."""
        with self._lock:
            return [j for j in self._jobs.values() if not j.snapshot().finished]
