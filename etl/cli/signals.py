"""SIGINT/SIGTERM from the first instant of the process to its last.

Python's default turns Ctrl-C into a ``KeyboardInterrupt`` wherever the interpreter happens
to be (an import, a thread join, asyncio's runner), which printed tracebacks and took one
signal for two. Here one handler is installed before anything heavy is imported, in one of
three modes:

- ``exit`` (from the start until a command begins): nothing has been done yet, so the
  process says so in one line and exits 3 at once;
- ``defer`` (``etl ingest``): the signal is recorded and handed to the running event loop,
  which stops gracefully (start-up is cancelled, a run commits what it holds); a signal
  that arrives before the loop listens is delivered as soon as it does;
- ``interrupt`` (every other command): Python's usual ``KeyboardInterrupt`` on SIGINT, so
  ``etl status --watch`` ends quietly; SIGTERM exits 143 (128 + 15, what a shell reports
  for a killed process) after cleaning up. A command with its own handlers (``etl serve``)
  replaces these.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Literal

Mode = Literal["exit", "defer", "interrupt"]
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_PARTIAL = 3  # errors.ExitCode.PARTIAL, without importing anything at start-up


class _State:
    mode: Mode = "exit"
    pending: list[str] = []  # noqa: RUF012 (one process-wide instance)
    listener: tuple[asyncio.AbstractEventLoop, Callable[[str], None]] | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _State.mode == "exit":
        os.write(2, f"stopped by {name} before start-up finished; nothing was done\n".encode())
        os._exit(EXIT_PARTIAL)
    if _State.mode == "interrupt":
        if signum == signal.SIGTERM:
            raise SystemExit(128 + signum)  # as if killed, but `finally` and atexit run
        raise KeyboardInterrupt
    listener = _State.listener
    if listener is None:
        if _State.pending:  # a second signal while nothing listens (start or end): go now
            os.write(2, f"stopped at once by a second signal ({name})\n".encode())
            os._exit(EXIT_PARTIAL)
        _State.pending.append(name)
        return
    loop, callback = listener
    loop.call_soon_threadsafe(callback, name)


def install() -> None:
    """The first thing the process does (``exit`` mode)."""
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup, `cmd &`: stay deaf
            signal.signal(sig, _handler)


def set_mode(mode: Mode) -> None:
    _State.mode = mode


def listen(loop: asyncio.AbstractEventLoop, callback: Callable[[str], None]) -> None:
    """Deliver signals to ``callback`` on ``loop`` (``defer`` mode), pending ones first."""
    _State.listener = (loop, callback)
    pending, _State.pending = _State.pending, []
    for name in pending:
        loop.call_soon(callback, name)


def stop_listening() -> None:
    _State.listener = None


def pending() -> list[str]:
    """Signals recorded while nothing listened (``defer`` mode)."""
    return list(_State.pending)
