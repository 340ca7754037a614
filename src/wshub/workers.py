"""The bounded pool that runs handlers and engine calls for commands.

Most commands finish without ever suspending (the memory engine, a handler that returns at
once). Those run eagerly, inline, with no task: the coroutine is stepped once and its result
used directly. Only a coroutine that really suspends becomes a task, and only
``concurrency`` such tasks run at once; the rest wait in a bounded queue, and beyond that
the caller is told to refuse (error 111). Each task has a timeout. The pool owns its tasks
and cancels them on ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("wshub.workers")

Done = Callable[[Any, BaseException | None], None]


@types.coroutine
def resume_coroutine(coro: Coroutine[Any, Any, Any], first: Any) -> Generator[Any, None, Any]:
    # ``coro`` was stepped once by hand and yielded ``first`` (a future, or None for a bare
    # yield). Hand that same future to the Task, then let the Task drive the rest.
    yield first
    return (yield from coro.__await__())


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
            coro = factory()
        except BaseException as exc:
            done(None, exc)
            return
        try:
            first = coro.send(None)
        except StopIteration as stop:
            done(stop.value, None)
            return
        except BaseException as exc:
            done(None, exc)
            return
        self.adopt(coro, first, done)

    @property
    def has_capacity(self) -> bool:
        """Whether a new call would start now rather than wait in the queue."""
        return self.running < self.concurrency and not self._closed

    def adopt(self, coro: Coroutine[Any, Any, Any], first: Any, done: Done) -> None:
        """Take over ``coro``, already stepped once by the caller and suspended on
        ``first``: run the rest as an owned task with the pool's timeout."""
        self.running += 1
        task = asyncio.ensure_future(resume_coroutine(coro, first))
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.timeout, task.cancel) if self.timeout > 0 else None

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self.running -= 1
            if handle is not None:
                handle.cancel()
            if t.cancelled():
                exc: BaseException = (
                    asyncio.CancelledError() if self._closed else TimeoutError("handler timed out")
                )
                done(None, exc)
            else:
                err = t.exception()
                done(None if err is not None else t.result(), err)
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


async def call_handler(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async user callable and return its result."""
    result = fn(*args)
    if isinstance(result, Awaitable):
        return await result
    return result
