"""Run async-only client code from the synchronous chat-model entry points.

Each call gets its own event loop on a worker thread, so ``invoke``/``stream`` work both from plain
scripts and from code that already runs inside an event loop (a notebook, an async server calling
the sync API).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["iterate_sync", "run_sync"]

_DONE = object()


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """The result of ``await factory()``, computed on a private event loop."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_await(factory))
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="gatewaykit-a2a", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


def iterate_sync(factory: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
    """The items of ``factory()``, produced on a private event loop and handed over one by one.

    Closing the returned iterator early stops the producer: it is told to stop and its loop
    closes the async iterator (so HTTP streams are released).
    """
    items: queue.Queue[Any] = queue.Queue(maxsize=64)
    stop = threading.Event()

    async def produce() -> None:
        it = factory()
        try:
            async for item in it:
                if stop.is_set():
                    break
                items.put(("item", item))
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    def target() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:
            items.put(("error", exc))
        else:
            items.put(("done", _DONE))

    thread = threading.Thread(target=target, name="gatewaykit-a2a-stream", daemon=True)
    thread.start()
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
        # Drain so a producer blocked on a full queue can see ``stop`` and finish.
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                items.get(timeout=0.05)
        thread.join()
