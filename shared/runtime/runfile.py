"""Where the servers `make run` uses are, for `clinicq` in another terminal.

`make run` may start embedded PostgreSQL and Redis on ports (and a socket
directory) chosen at start-up; a `clinicq` command typed in a second shell
has neither DATABASE_URL nor REDIS_URL. The supervisor therefore writes
`$CLINICQ_VAR_DIR/run.env` (mode 0600: the URLs may carry a password) with
the two URLs and its own pid, and removes it when it stops. The CLI reads it
when DATABASE_URL / REDIS_URL are unset, and only while that pid is still a
running supervisor: a file left by a supervisor killed with SIGKILL is
reported as stale and ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

from shared.core.errors import ClinicqError

ROOT = Path(__file__).resolve().parents[2]  # the repository root
RUN_FILE = "run.env"
RECORDED = ("DATABASE_URL", "REDIS_URL")


class StaleRunFile(ClinicqError, RuntimeError):
    """run.env names a supervisor that is no longer running."""


def var_dir() -> Path:
    return Path(os.environ.get("CLINICQ_VAR_DIR") or ROOT / "var").resolve()


def run_file(directory: Path | None = None) -> Path:
    return (directory or var_dir()) / RUN_FILE


def write_run_file(directory: Path, urls: dict[str, str], pid: int) -> Path:
    """Atomically (write + rename) record `urls` and the supervisor's pid."""
    directory.mkdir(parents=True, exist_ok=True)
    path = run_file(directory)
    tmp = path.with_name(f".{RUN_FILE}.{pid}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# Written by `make run` for the clinicq CLI; removed when it stops.\n")
        fh.write(f"CLINICQ_SUPERVISOR_PID={pid}\n")
        fh.writelines(f"{name}={urls[name]}\n" for name in RECORDED if urls.get(name))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def remove_run_file(directory: Path, pid: int) -> None:
    """Remove run.env if it is ours (a newer supervisor may have replaced it)."""
    path = run_file(directory)
    try:
        if _parse(path.read_text()).get("CLINICQ_SUPERVISOR_PID") == str(pid):
            path.unlink()
    except OSError:
        pass


def _parse(content: str) -> dict[str, str]:
    values = {}
    for line in content.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _supervisor_running(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (not Linux): is the pid alive at all?
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return b"shared.runtime.supervisor" in cmdline


def read_run_file(directory: Path | None = None) -> dict[str, str]:
    """The recorded URLs of a running `make run`; {} when there is no file.
    Raises StaleRunFile when the supervisor that wrote it is gone."""
    path = run_file(directory)
    try:
        values = _parse(path.read_text())
    except FileNotFoundError:
        return {}
    try:
        pid = int(values.get("CLINICQ_SUPERVISOR_PID", ""))
    except ValueError:
        raise StaleRunFile(f"{path} names no supervisor pid") from None
    if not _supervisor_running(pid):
        raise StaleRunFile(f"{path} is stale: `make run` (pid {pid}) is not running")
    return {name: values[name] for name in RECORDED if values.get(name)}


def discover_servers(environ: dict[str, str] | None = None) -> str | None:
    """Fill DATABASE_URL / REDIS_URL into `environ` (default os.environ) from
    a running `make run` when they are unset. Returns a note for the user
    when run.env was stale, else None. Set variables always win."""
    env = os.environ if environ is None else environ
    if all(env.get(name) for name in RECORDED):
        return None
    try:
        found = read_run_file()
    except StaleRunFile as exc:
        return str(exc)
    for name, value in found.items():
        if not env.get(name):
            env[name] = value
    return None
