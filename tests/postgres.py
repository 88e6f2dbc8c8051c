"""A private PostgreSQL cluster for the tests: Debian's package (`apt-get
install postgresql`, which `make test` does), started in a temporary folder
on a free port with initdb and pg_ctl, and removed afterwards.

initdb refuses to run as root, and the tests run as root in CI: then the
cluster runs as the ``postgres`` user the package creates (runuser).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

MISSING = ("PostgreSQL is not installed, and the SQL read model must be tested on it: install Debian's "
           "package (`apt-get install -y postgresql`; `make test` does this) and run the tests again")


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


@dataclass
class LocalPostgres:
    bin: Path
    data: Path
    port: int
    user: str = "regen"

    @classmethod
    def start(cls) -> LocalPostgres:
        bin = postgres_bin()
        if bin is None:
            raise RuntimeError(MISSING)
        # Not under pytest's tmp folder: its parents are private to root,
        # and the server may run as another user.
        data = Path(tempfile.mkdtemp(prefix="regen-postgres-"))
        server = cls(bin, data, free_port())
        server._chown(data)
        server._run("initdb", "-D", str(data / "db"), "-U", server.user, "-A", "trust", "--no-sync", "-E", "UTF8")
        options = f"-p {server.port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
        server._run("pg_ctl", "-D", str(data / "db"), "-o", options, "-l", str(data / "server.log"), "-w", "start")
        return server

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data / "db"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.data, ignore_errors=True)

    def _as_server_user(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self._as_server_user(), str(self.bin / tool), *args], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            log = (self.data / "server.log")
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n"
                               f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
