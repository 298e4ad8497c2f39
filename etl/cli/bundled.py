"""Start the bundled sandbox in a child process when no --api-url is given."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence

import aiohttp

from etl.errors import SourceError

DEMO_KEY_ENV = "SANDBOX_API_KEYS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def bundled_sandbox(
    api_key: str, *, events: int, extra_args: Sequence[str] = (), startup_s: float = 60.0
) -> AsyncIterator[str]:
    """Run ``etl sandbox`` on a free loopback port; yield its API base URL."""
    port = free_port()
    env = dict(os.environ)
    env[DEMO_KEY_ENV] = api_key
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "etl",
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--events",
        str(events),
        *extra_args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # Ctrl-C in the terminal is ours to handle, not the child's
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(int(startup_s * 10)):
                if proc.returncode is not None:
                    break
                try:
                    async with session.get(f"{base}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SourceError(f"the bundled sandbox did not start within {startup_s:g}s")
        if proc.returncode is not None:
            err = b""
            if proc.stderr is not None:
                err = await proc.stderr.read()
            raise SourceError(f"the bundled sandbox exited: {err.decode(errors='replace')[-500:]}")
        yield f"{base}/api/v1"
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
