"""Run async-only client code from the synchronous chat-model entry points.

Every sync call runs on one long-lived event loop in a daemon thread, shared by the process, so
``invoke``/``stream`` work from plain scripts and from code that already runs inside an event
loop (a notebook, an async server calling the sync API), and the HTTP clients the agent models
keep per event loop are built once, not once per call. The caller's context variables (tracing
context, for one) travel with each call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["iterate_sync", "run_sync"]

_DONE = object()
_LOCK = threading.Lock()
_LOOP: asyncio.AbstractEventLoop | None = None
_THREAD: threading.Thread | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """The process's background event loop, started on first use."""
    global _LOOP, _THREAD
    with _LOCK:
        if _LOOP is None or _THREAD is None or not _THREAD.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="gatewaykit-agents-sync", daemon=True)
            thread.start()
            ready.wait()
            _LOOP, _THREAD = loop, thread
        return _LOOP


def _on_loop_thread() -> bool:
    return _THREAD is not None and threading.current_thread() is _THREAD


def _submit(coro_factory: Callable[[], Awaitable[T]]) -> tuple[Any, asyncio.AbstractEventLoop]:
    """Start ``coro_factory()`` on the background loop, in the caller's context."""
    loop = _loop()
    ctx = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    box: dict[str, asyncio.Task[T]] = {}

    def start() -> None:
        task: asyncio.Task[T] = loop.create_task(_await(coro_factory), context=ctx)
        box["task"] = task

        def finish(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif t.exception() is not None:
                done.set_exception(t.exception())  # type: ignore[arg-type]
            else:
                done.set_result(t.result())

        task.add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    return (done, box), loop


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """The result of ``await factory()``, computed on the background event loop."""
    if _on_loop_thread():  # called from a coroutine on that loop: a loop of its own
        return _run_on_own_loop(factory)
    (done, box), loop = _submit(factory)
    try:
        return done.result()  # type: ignore[no-any-return]
    except BaseException:
        task = box.get("task")
        if task is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)  # e.g. KeyboardInterrupt in the caller
        raise


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def _run_on_own_loop(factory: Callable[[], Awaitable[T]]) -> T:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_await(factory))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="gatewaykit-agents-nested", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def iterate_sync(factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """The items of ``factory()``, produced on the background event loop, handed over one by one.

    Closing the returned iterator early stops the producer: its task is cancelled, which closes
    the async iterator (so HTTP streams are released).
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=64)
    stop = threading.Event()

    async def put(entry: tuple[str, Any]) -> None:
        while not stop.is_set():  # never block the shared loop on a full queue
            try:
                items.put_nowait(entry)
                return
            except queue.Full:
                await asyncio.sleep(0.005)

    async def produce() -> None:
        it = factory()
        try:
            async for item in it:
                if stop.is_set():
                    break
                await put(("item", item))
        except BaseException as exc:
            await put(("error", exc))
            if not isinstance(exc, Exception):
                raise
        else:
            await put(("done", _DONE))
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    if _on_loop_thread():
        yield from _iterate_on_own_loop(factory)
        return
    (done, box), loop = _submit(produce)
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        task = box.get("task")
        if task is not None and not task.done():
            loop.call_soon_threadsafe(task.cancel)
        with contextlib.suppress(BaseException):
            done.result(timeout=5)


def _iterate_on_own_loop(factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    async def collect() -> list[T]:
        return [item async for item in factory()]

    yield from _run_on_own_loop(collect)
