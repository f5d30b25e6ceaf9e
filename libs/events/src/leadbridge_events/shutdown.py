"""Stopping cleanly, whatever asks for it: SIGTERM/SIGINT, or the task running the service being cancelled.

Two rules every stop in the backbone follows (``ServiceRuntime.stop``, the consumer runner's last commit):

* a stop, once begun, runs to its end: ``run_to_completion`` keeps waiting for it when the caller is
  cancelled (again), and re-raises that cancellation only afterwards -- so the record in flight is finished,
  its offset committed, the group left and the connections closed even when the task is cancelled twice;
* a process's signal handling is borrowed, not taken: ``stop_on_signals`` installs SIGTERM/SIGINT handlers
  for as long as a service runs and puts the previous ones back, so a service whose task was cancelled
  does not leave a handler behind that swallows the next SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_to_completion(coro: Coroutine[Any, Any, T] | asyncio.Future[T]) -> T:
    """Await ``coro`` (or a future) to its end even if the caller is cancelled meanwhile; then re-raise the cancellation."""
    task: asyncio.Future[T] = asyncio.ensure_future(coro)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.cancelled():  # the stop itself was cancelled (by its own bounds): nothing left to wait for
                raise
            if task.done():
                result = task.result()
                cancelled = True
                break
            cancelled = True  # keep waiting: the stop is bounded by its own timeouts
    if cancelled:
        raise asyncio.CancelledError()
    return result


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGTERM or SIGINT while inside; restore the previous handlers on the way out."""
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}
    for sig in SIGNALS:
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            loop.remove_signal_handler(signum)
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _stopped_on_request(signum: int, frame: Any) -> None:
    raise SystemExit(0)


@contextlib.contextmanager
def exit_zero_after_signals() -> Iterator[None]:
    """A server stopped by SIGTERM/SIGINT exits 0 once it has shut down (uvicorn re-raises the signal it caught
    after its graceful shutdown, which would otherwise end the process as killed by it)."""
    previous = {sig: signal.signal(sig, _stopped_on_request) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
