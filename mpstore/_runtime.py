"""The only threads mpstore starts: one core thread running an asyncio loop, one dispatcher.

The core thread owns all protocol state; other threads hop onto it with :meth:`Runtime.call`
(wait for a result) or :meth:`Runtime.post` (fire and forget). User callbacks run one at a time,
in order, on the dispatcher thread, never on the core thread and never under an internal lock.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._errors import Closed, Timeout

__all__ = ["Runtime"]

log = logging.getLogger("mpstore.runtime")
T = TypeVar("T")

_STOP = object()


class Runtime:
    """A core loop thread and a callback dispatcher thread, started together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._closed = False
        self._ready = threading.Event()
        self._callbacks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Calls posted from other threads, taken by the core in batches (see post()).
        self._posted: collections.deque[tuple[Callable[..., Any], tuple[Any, ...]]] = collections.deque()
        self._posted_lock = threading.Lock()
        self._drain_scheduled = False
        # The items list of the last entry of _posted when post_many() made it, and its function.
        self._tail_fn: Callable[..., Any] | None = None
        self._tail_items: list[Any] = []
        # Core thread: calls to make once the posted calls being run now are all done.
        self._draining = False
        self._at_batch_end: list[Callable[[], None]] = []
        # Futures of call() not finished yet: failed with Closed once the loop is closed, so a
        # call whose post landed just before the loop stopped cannot wait forever.
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._calls_lock = threading.Lock()
        self._core = threading.Thread(target=self._run_core, name=f"mpstore-core-{name}", daemon=True)
        self._dispatcher = threading.Thread(
            target=self._run_dispatcher, name=f"mpstore-dispatch-{name}", daemon=True
        )
        self._core.start()
        self._dispatcher.start()
        self._ready.wait()

    # -- threads ------------------------------------------------------------------------------
    def _run_core(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
                with self._calls_lock:
                    stranded, self._calls = self._calls, set()
                for future in stranded:
                    if future.set_running_or_notify_cancel():
                        future.set_exception(Closed("this object was ended with end_all()"))

    def _run_dispatcher(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is _STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:
                log.exception("error in an mpstore callback (%s)", getattr(fn, "__name__", fn))
            # Not kept alive while waiting for the next one (a store change can hold every key).
            del item, fn, args

    # -- hops -----------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once stop() began."""
        return self._closed

    def on_core_thread(self) -> bool:
        """True when called from the core thread."""
        return threading.current_thread() is self._core

    def on_dispatcher_thread(self) -> bool:
        """True when called from the dispatcher thread (inside a user callback)."""
        return threading.current_thread() is self._dispatcher

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the core thread soon (in post order); raise Closed after stop()."""
        if self._closed:
            raise Closed("this object was ended with end_all()")
        with self._posted_lock:
            self._posted.append((fn, args))
            self._tail_fn = None
            if self._drain_scheduled:
                return  # the core will take it with the others: one wake-up per burst
            self._drain_scheduled = True
        self._wake()

    def post_many(self, fn: Callable[[list[Any]], Any], item: Any) -> None:
        """Like ``post(fn, [item])``, except that items posted to one ``fn`` with nothing posted
        in between are handed over together, in order: ``fn(items)`` once for a burst."""
        if self._closed:
            raise Closed("this object was ended with end_all()")
        with self._posted_lock:
            if self._tail_fn is fn:
                self._tail_items.append(item)
                return  # its entry is queued, so its drain is scheduled
            items = [item]
            self._posted.append((fn, (items,)))
            self._tail_fn, self._tail_items = fn, items
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._wake()

    def _wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._drain_posted)
        except RuntimeError:
            raise Closed("this object was ended with end_all()") from None

    def _drain_posted(self) -> None:
        """Core thread: run what was posted so far, then yield to I/O if more is waiting."""
        with self._posted_lock:
            batch, self._posted = self._posted, collections.deque()
            self._tail_fn = None
        self._draining = True
        try:
            for fn, args in batch:
                try:
                    fn(*args)
                except Exception:
                    log.exception("error in a call posted to the core (%s)", getattr(fn, "__name__", fn))
        finally:
            # Hooks may add hooks (the links' flush queues the transport's): all run here.
            while self._at_batch_end:
                hooks, self._at_batch_end = self._at_batch_end, []
                for hook in hooks:
                    try:
                        hook()
                    except Exception:
                        name = getattr(hook, "__name__", hook)
                        log.exception("error at the end of posted calls (%s)", name)
            self._draining = False
        with self._posted_lock:
            if self._posted:
                self.loop.call_soon(self._drain_posted)  # after the I/O that is ready
            else:
                self._drain_scheduled = False

    @property
    def in_batch(self) -> bool:
        """Core thread: True while posted calls (or their at_batch_end hooks) run."""
        return self._draining

    def at_batch_end(self, fn: Callable[[], None]) -> None:
        """Core thread: call ``fn`` once the posted calls being run now are done (they come in
        bursts: one hand-over for a burst), or on the loop's next turn outside such a run."""
        if self._draining:
            self._at_batch_end.append(fn)
        else:
            self.loop.call_soon(fn)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the core thread and return its result (inline if already there)."""
        if self.on_core_thread():
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            with self._calls_lock:
                self._calls.discard(future)
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        with self._calls_lock:
            self._calls.add(future)
        try:
            self.post(run)
        except BaseException:
            with self._calls_lock:
                self._calls.discard(future)
            raise
        if self.loop.is_closed():
            # Closed between our post and now: the sweep may have run before we were added.
            with self._calls_lock:
                gone = future in self._calls
                self._calls.discard(future)
            if gone and future.set_running_or_notify_cancel():
                future.set_exception(Closed("this object was ended with end_all()"))
        return self._wait(future, timeout)

    def call_async(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the core loop and wait for its result."""
        if self._closed:
            coro.close()
            raise Closed("this object was ended with end_all()")
        try:
            future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()
            raise Closed("this object was ended with end_all()") from None
        return self._wait(future, timeout)

    def _wait(self, future: concurrent.futures.Future[T], timeout: float | None) -> T:
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Timeout(f"the core thread did not answer within {timeout} s") from None
        except concurrent.futures.CancelledError:
            raise Closed("this object was ended with end_all()") from None

    def dispatch(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` for the dispatcher thread (after everything queued before)."""
        self._callbacks.put((fn, args))

    # -- shutdown -------------------------------------------------------------------------------
    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads: pending callbacks run first. Idempotent; safe from any thread."""
        if not self._closed:
            self._closed = True
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass
            self._callbacks.put(_STOP)
        current = threading.current_thread()
        for thread in (self._core, self._dispatcher):
            if thread is not current and thread.is_alive():
                thread.join(timeout)
                if thread.is_alive():
                    log.warning("%s did not stop within %s s", thread.name, timeout)
