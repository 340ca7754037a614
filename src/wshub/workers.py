"""The bounded pool that runs handlers and engine calls for commands.

Every call runs in a real asyncio Task, so handler code sees a current task
(``asyncio.timeout``, ``asyncio.current_task``, libraries such as redis-py rely on it). On
Python 3.12+ the task starts eagerly: it runs inline, inside the callback that received the
command, until it first has to wait; most commands (the memory engine, a handler that
returns at once) finish right there and are never scheduled. On 3.11 every call is a
scheduled task (correct, slower). A task that does wait counts against ``concurrency``;
beyond it calls wait in a bounded queue, and beyond that the caller is told to refuse
(error 111). Each waiting task has a timeout. The pool owns its tasks and cancels them on
``close``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("wshub.workers")

Done = Callable[[Any, BaseException | None], None]

EAGER = sys.version_info >= (3, 12)
"""Whether tasks start eagerly (Python 3.12+)."""


def start_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Start ``coro`` as a task: eagerly where the interpreter supports it (the returned
    task may already be done), else scheduled."""
    loop = asyncio.get_running_loop()
    if EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)


def outcome(task: asyncio.Task[Any]) -> tuple[Any, BaseException | None]:
    """(result, exception) of a finished task; cancellation reads as a timeout."""
    if task.cancelled():
        return None, TimeoutError("handler timed out")
    exc = task.exception()
    return (None, exc) if exc is not None else (task.result(), None)


class WorkerPool:
    def __init__(self, concurrency: int, queue_size: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.queue_size = queue_size
        self.timeout = timeout
        self.running = 0
        self._queue: deque[tuple[Callable[[], Coroutine[Any, Any, Any]], Done]] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def has_capacity(self) -> bool:
        """Whether a new call would start now rather than wait in the queue."""
        return self.running < self.concurrency and not self._closed

    def submit(self, factory: Callable[[], Coroutine[Any, Any, Any]], done: Done) -> bool:
        """Run ``factory()`` and call ``done(result, exc)`` when it finishes (possibly before
        this returns). Returns False, calling nothing, when the pool is full."""
        if self._closed:
            return False
        if self.running >= self.concurrency:
            if len(self._queue) >= self.queue_size:
                return False
            self._queue.append((factory, done))
            return True
        self._start(factory, done)
        return True

    def _start(self, factory: Callable[[], Coroutine[Any, Any, Any]], done: Done) -> None:
        try:
            task = start_task(factory())
        except BaseException as exc:
            done(None, exc)
            return
        if task.done():
            done(*outcome(task))
            return
        self.track(task, done)

    def track(self, task: asyncio.Task[Any], done: Done) -> None:
        """Own ``task`` (started by the caller, not finished yet): count it as running,
        cancel it after the pool's timeout, then call ``done(result, exc)``."""
        self.running += 1
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.timeout, task.cancel) if self.timeout > 0 else None

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self.running -= 1
            if handle is not None:
                handle.cancel()
            if t.cancelled() and self._closed:
                done(None, asyncio.CancelledError())
            else:
                done(*outcome(t))
            self._next()

        task.add_done_callback(finished)

    def _next(self) -> None:
        while self._queue and self.running < self.concurrency and not self._closed:
            factory, done = self._queue.popleft()
            self._start(factory, done)

    async def close(self) -> None:
        self._closed = True
        self._queue.clear()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
