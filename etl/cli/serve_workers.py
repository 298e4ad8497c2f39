"""`etl serve --workers N`: N server processes on one port, and the process that minds them.

Python answers on one core per process; N workers (forked before any event loop exists)
each listen on the same address with ``SO_REUSEPORT``, so the kernel spreads connections
over them. The supervisor reserves the port first (so ``--port 0`` picks one port for all),
prints the one "listening" line once every worker listens, and on SIGTERM/SIGINT passes
SIGTERM on: each worker drains its requests in flight, as a single server does, and the
supervisor exits 0 once they all have. A worker that dies on its own takes the others down
(exit 1): a supervisor above (systemd, Kubernetes) restarts the whole server. Their request
counts are summed in /metrics through a directory of per-worker files (``etl.serve.peers``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import queue
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType

# serve_one(worker index, port, shared directory, on_listening(text)): runs one worker
ServeOne = Callable[[int, int, Path, Callable[[str], None]], None]
DRAIN_S = 15.0  # how long workers get to finish after SIGTERM (their shutdown_timeout is 10)


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT: the port is ours,
    and the workers may bind it too. Raises OSError when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def supervise(n: int, host: str, port: int, serve_one: ServeOne, say: Callable[[str], None]) -> int:
    """Run ``n`` workers until SIGTERM/SIGINT (exit 0) or one of them dies (exit 1)."""
    probe = reserve(host, port)
    port = int(probe.getsockname()[1])
    shared = Path(tempfile.mkdtemp(prefix="etl-serve-"))
    ctx = mp.get_context("fork")
    ready: mp.Queue[str] = ctx.Queue()

    def run(k: int) -> None:
        serve_one(k, port, shared, ready.put)

    workers = [ctx.Process(target=run, args=(k,), name=f"etl-serve-{k}") for k in range(n)]
    for w in workers:
        w.start()
    stop: list[int] = []

    def on_signal(signum: int, _: FrameType | None) -> None:
        stop.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        texts = _wait_ready(workers, ready, stop)
        probe.close()
        if texts is not None:
            say(texts)
            while not stop and all(w.is_alive() for w in workers):
                wait([w.sentinel for w in workers], timeout=0.5)
        return 0 if stop else 1
    finally:
        probe.close()
        _stop(workers)
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(shared, ignore_errors=True)


def _wait_ready(
    workers: Sequence[mp.process.BaseProcess], ready: mp.Queue[str], stop: list[int]
) -> str | None:
    """The first worker's "listening" text once all listen; None if one died or a signal came."""
    texts: list[str] = []
    while len(texts) < len(workers):
        if stop or not all(w.is_alive() for w in workers):
            return None
        with contextlib.suppress(queue.Empty):
            texts.append(ready.get(timeout=0.2))
    return texts[0]


def _stop(workers: Sequence[mp.process.BaseProcess]) -> None:
    for w in workers:
        if w.is_alive():
            w.terminate()  # SIGTERM: the worker drains its requests in flight
    deadline = time.monotonic() + DRAIN_S
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
        if w.is_alive():
            w.kill()
            w.join()
