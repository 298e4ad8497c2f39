"""Running the sandbox: bind, announce, serve until a stop event (SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from etl.sandbox.app import build_app
from etl.sandbox.clock import SandboxClock
from etl.sandbox.config import SandboxConfig


async def serve(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    clock: SandboxClock | None = None,
    on_ready: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until ``stop`` is set or SIGINT/SIGTERM arrives; ``on_ready(base_url)`` once bound."""
    app = build_app(config, clock=clock)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        bound = port or int(runner.addresses[0][1])
        if on_ready is not None:
            on_ready(f"http://{_host_for_url(host)}:{bound}/api/v1")
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host
