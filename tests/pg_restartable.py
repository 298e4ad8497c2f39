"""A private PostgreSQL that a test (or bench/chaos.py) starts, restarts and stops itself.

It uses the server binaries the ``pgserver`` package ships (a runtime dependency, so every
machine that runs the tests has them), on a temporary data directory and a free TCP port on
127.0.0.1. PostgreSQL refuses to run as root: as root it runs as the system user
``pgserver`` (which pgserver itself creates; created here if missing).

    with RestartablePostgres() as pg:
        dsn = pg.dsn("postgres")
        pg.restart("fast")        # or "immediate": a crash, recovery on start
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

BIN_ENV = "ETL_PG_BIN"  # another server's bin dir (e.g. /usr/lib/postgresql/15/bin)


def _bin_dir() -> Path:
    if os.environ.get(BIN_ENV):
        return Path(os.environ[BIN_ENV])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestartablePostgres:
    def __init__(self, *, port: int | None = None) -> None:
        self.bin = _bin_dir()
        self.port = port or _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="etl-pg-"))
        self.pgdata = self.root / "data"
        self.logfile = self.root / "log"
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = "pgserver"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/sh", self.user], check=True)
            ent = pwd.getpwnam(self.user)
            os.chown(self.root, ent.pw_uid, ent.pw_gid)
            os.chmod(self.root, 0o700)
            # the temp dir's parents must be traversable by that user
            for parent in self.root.parents:
                if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
                    os.chmod(parent, os.stat(parent).st_mode | 0o011)

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=check,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            cwd=self.root,
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), *args, check=check)

    def start(self) -> None:
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c max_connections=60"
        self._pg_ctl("-w", "-o", opts, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-m", mode, "stop", check=False)

    def restart(self, mode: str = "fast", *, down_s: float = 0.0) -> float:
        """Stop (``fast``: sessions terminated; ``immediate``: a crash) and start again after
        ``down_s``; returns the seconds the server was unreachable."""
        t0 = time.monotonic()
        self.stop(mode)
        if down_s:
            time.sleep(down_s)
        self.start()
        return time.monotonic() - t0

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def __enter__(self) -> RestartablePostgres:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
