"""Where handlers and store calls run when not on the caller's own thread or loop.

No web framework. ``Workers`` owns two lazily started resources of a receiver:

- a thread pool, for sync handlers under ``handle_async`` (so the event loop is
  never blocked) and for calls to a blocking store made under a deadline;
- a private event loop in a daemon thread, for async handlers under ``handle``
  (one loop for every call, so async clients a handler keeps stay usable).

``submit`` hands back the pool's own future. At a deadline, one that ``cancel()``
can still withdraw never got a thread: the pool is full (every thread busy),
not the store it was to call silent; withdrawn, it is never run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Workers"]

_T = TypeVar("_T")


class Workers:
    """A receiver's thread pool and private event loop, each started on first use.

    Args:
        max_threads: the pool's size.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop_thread: _LoopThread | None = None
        self._lock = threading.Lock()

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.max_threads, thread_name_prefix="census-receiver"
                    )
                executor = self._executor
        return executor

    def submit(self, fn: Callable[..., _T], *args: Any) -> concurrent.futures.Future[_T]:
        """Run ``fn(*args)`` in the pool, with the caller's context variables.

        Returns:
            Its future. While every thread is taken it has not started, and
            ``cancel()`` withdraws it (and says so): that is how a full pool is
            told from a slow call.
        """
        return self._pool().submit(contextvars.copy_context().run, fn, *args)

    async def in_thread(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Await ``fn(*args)`` run in the pool, with the caller's context variables."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def run_coroutine(self, awaitable: Awaitable[_T]) -> _T:
        """Run ``awaitable`` on the private event loop and wait for its result.

        Raises:
            RuntimeError: when called from the private loop itself (a deadlock).
        """
        with self._lock:
            if self._loop_thread is None:
                self._loop_thread = _LoopThread(self)
            loop_thread = self._loop_thread
        return loop_thread.run(awaitable)

    def close(self) -> None:
        """Stop the pool and the private loop, if started; running work finishes first.

        Both start again if used after this.
        """
        with self._lock:
            executor, self._executor = self._executor, None
            loop_thread, self._loop_thread = self._loop_thread, None
        if executor is not None:
            executor.shutdown(wait=True)
        if loop_thread is not None:
            loop_thread.stop()


class _LoopThread:
    """A private event loop in a daemon thread; stops with ``stop()`` or its owner."""

    def __init__(self, owner: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="census-receiver-loop", daemon=True)
        self.thread.start()
        self._finalizer = weakref.finalize(owner, _stop_loop, self.loop, self.thread)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, awaitable: Awaitable[_T]) -> _T:
        if threading.current_thread() is self.thread:
            raise RuntimeError(
                "receiver.handle cannot be called from one of its own async handlers"
            )

        async def wrap() -> _T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        self._finalizer()


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    if not loop.is_closed():
        loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():
        thread.join(timeout=5)
