"""A private PostgreSQL cluster for the tests: Debian's `postgresql` package (`make test`
installs it), initialised in a temporary folder and listening only on a Unix socket there.
As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
                   key=lambda p: int(Path(p).parts[-3]))
    if found:
        return found[-1]
    on_path = shutil.which(tool)
    if on_path is None:
        raise RuntimeError(f"PostgreSQL's {tool} is not installed: `make test` installs "
                           "Debian's postgresql package (apt-get install postgresql)")
    return on_path


class Cluster:
    def __init__(self, socket_dir: Path, port: int) -> None:
        self.socket_dir, self.port = socket_dir, port
        self._databases = 0

    def url(self, database: str = "postgres") -> str:
        return (f"postgresql+psycopg://postgres@/{database}"
                f"?host={self.socket_dir}&port={self.port}")

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import sqlalchemy as sa

        self._databases += 1
        name = f"test_{os.getpid()}_{self._databases}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    base = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
    port = 5433 + os.getpid() % 20000
    subprocess.run([*run_as, _bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
    options = (f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off")
    subprocess.run([*run_as, _bin("pg_ctl"), "-D", str(data), "-o", options, "-l",
                    str(base / "server.log"), "-w", "start"], check=True, capture_output=True)
    try:
        yield Cluster(sock, port)
    finally:
        subprocess.run([*run_as, _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
