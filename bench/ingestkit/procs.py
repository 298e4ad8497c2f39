"""Child processes: run one measured, its CPU and RSS, and the environment it gets."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ingestkit.common import _SCRUB_PREFIXES

# ---------------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------------


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int | None
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    stdout: str
    stderr: str
    timed_out: bool
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (seconds, MB) samples

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def tail(self, n: int = 800) -> str:
        return (self.stderr.strip() or self.stdout.strip())[-n:]


class Children:
    """Every process this script starts, each in its own session; all killed on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> Any:
        out = open(log.with_suffix(".out"), "wb")  # noqa: SIM115 - closed by the caller
        err = open(log.with_suffix(".err"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # its own session: pgid == pid

    def stop(self, proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
        if proc.returncode is None and proc.poll() is None:
            self.signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.signal_group(proc, signal.SIGKILL)
                proc.wait(10)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc, grace_s=5.0)


def run_measured(
    children: Children,
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str],
    log: Path,
    timeout_s: float,
) -> ProcResult:
    """Run ``argv`` to completion; CPU and peak RSS from the rusage ``wait4`` returns."""
    t0 = time.perf_counter()
    proc = children.spawn(argv, cwd=cwd, env=env, log=log)
    timed_out = False
    samples: list[tuple[float, float]] = []
    next_sample = 0.0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter() - t0
        if now >= next_sample:
            next_sample = now + 0.25
            rss = vm_rss_mb(proc.pid)
            if rss is not None:
                samples.append((round(now, 2), rss))
        if time.perf_counter() - t0 > timeout_s:
            timed_out = True
            children.signal_group(proc, signal.SIGTERM)
            deadline = time.perf_counter() + 15
            while time.perf_counter() < deadline:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.1)
            else:
                children.signal_group(proc, signal.SIGKILL)
                pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    children.procs.remove(proc)
    return ProcResult(
        argv=list(argv),
        returncode=proc.returncode,
        wall_s=wall,
        user_s=ru.ru_utime,
        sys_s=ru.ru_stime,
        maxrss_mb=ru.ru_maxrss / 1024,  # Linux: KiB
        stdout=log.with_suffix(".out").read_text(errors="replace"),
        stderr=log.with_suffix(".err").read_text(errors="replace"),
        timed_out=timed_out,
        rss_mb=samples,
    )


def vm_rss_mb(pid: int) -> float | None:
    """The resident set of ``pid`` now (Linux /proc), in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def rss_over_time(samples: list[tuple[float, float]]) -> dict[str, float] | None:
    """RSS at 10/50/90 % of the run and the spread over its middle 80 % (flat = small)."""
    if len(samples) < 5:
        return None
    end = samples[-1][0]
    middle = [mb for t, mb in samples if 0.1 * end <= t <= 0.9 * end]
    if not middle:
        return None

    def at(share: float) -> float:
        return min(samples, key=lambda s: abs(s[0] - share * end))[1]

    return {
        "p10_mb": round(at(0.1), 1),
        "p50_mb": round(at(0.5), 1),
        "p90_mb": round(at(0.9), 1),
        "spread": round((max(middle) - min(middle)) / min(middle), 4),
    }


def child_env(src: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(src), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    return env


def cpu_total(proc: psutil.Process, *, with_children: bool = False) -> float:
    """User+sys seconds of ``proc`` (+ its reaped children, + its live children)."""
    try:
        t = proc.cpu_times()
        total = float(t.user + t.system)
        if with_children:
            total += t.children_user + t.children_system
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
        return total
    except psutil.Error:
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
