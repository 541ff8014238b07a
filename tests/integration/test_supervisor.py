"""`make run` (shared/runtime/supervisor.py) as a real subprocess: it starts gunicorn,
a Celery worker, Flower (and embedded PostgreSQL/Redis when unconfigured),
prints a curl that really works, and stops every child on SIGTERM or when
one of them dies."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import select

from shared.core.db import session_scope
from shared.core.models import Message
from shared.runtime.embedded import free_port
from shared.runtime.supervisor import dev_secrets
from tests.helpers import wait_for
from tests.infra import ROOT


class Supervisor:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.ingest_port = free_port()
        self.flower_port = free_port()
        self.console_port = free_port()
        self.var_dir = tmp_path / "var"
        self.out_path = tmp_path / "supervisor.out"
        self.err_path = tmp_path / "supervisor.err"
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        full_env = {
            **env,
            "INGEST_PORT": str(self.ingest_port),
            "FLOWER_PORT": str(self.flower_port),
            "CONSOLE_PORT": str(self.console_port),
            "CLINICQ_VAR_DIR": str(self.var_dir),
            "INGEST_WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.runtime.supervisor"],
            cwd=ROOT, env=full_env, stdout=self._out, stderr=self._err,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.ingest_port}"

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"supervisor exited {self.proc.returncode}\n{self.stdout()}\n{self.stderr()[-4000:]}"
                )
            if "Ctrl-C stops everything" not in self.stdout():
                return False
            try:
                return requests.get(f"{self.base}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(ready, timeout, 0.2)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def curl_command(self) -> str:
        lines = [line for line in self.stdout().splitlines() if line.startswith("BODY=")]
        assert len(lines) == 1, self.stdout()
        return lines[0]

    def close(self) -> None:
        # After a failed assertion: the normal stop path (it also stops the
        # embedded servers, which SIGKILL would orphan), SIGKILL as a last resort.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._out.close()
        self._err.close()


def alive(procs: list[psutil.Process]) -> list[str]:
    left = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return left


def run_printed_curl(sup: Supervisor) -> tuple[int, dict]:
    out = subprocess.run(
        ["bash", "-c", sup.curl_command()], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 0, out.stderr
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    status = int(head.split()[1])
    import json

    return status, json.loads(body)


def create_key_with_printed_command(sup: Supervisor) -> str:
    """Run the banner's `create-api-key` line as a new user would, from a
    shell that has neither DATABASE_URL nor REDIS_URL: the CLI must find the
    servers `make run` uses through var/run.env."""
    lines = [line for line in sup.stdout().splitlines() if "create-api-key" in line]
    assert len(lines) == 1, sup.stdout()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["CLINICQ_VAR_DIR"] = str(sup.var_dir)
    out = subprocess.run(
        ["bash", "-c", lines[0]], cwd="/", env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "scopes intake, send" in out.stderr
    return out.stdout.strip()


def assert_run_file_recorded(sup: Supervisor) -> None:
    run_env = sup.var_dir / "run.env"
    assert stat.S_IMODE(run_env.stat().st_mode) == 0o600
    recorded = run_env.read_text()
    assert f"CLINICQ_SUPERVISOR_PID={sup.proc.pid}" in recorded
    assert "DATABASE_URL=" in recorded and "REDIS_URL=" in recorded


def use_key_against_ingest(sup: Supervisor, key: str, message_id: uuid.UUID) -> None:
    # Until the worker files the message its status is "accepted", with no
    # contact yet: wait for the filed answer (which shows a key its contact).
    deadline = time.monotonic() + 30
    while True:
        status = requests.get(
            f"{sup.base}/api/messages/{message_id}", headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        )
        assert status.status_code == 200, status.text
        if status.json().get("status") != "accepted" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status.json()["message_id"] == str(message_id)
    # The same key is scoped: no patient data, no erasure.
    contact = status.json()["contact_id"]
    denied = requests.delete(
        f"{sup.base}/api/contacts/{contact}", headers={"Authorization": f"Bearer {key}"},
        timeout=5,
    )
    assert denied.status_code == 403, denied.text


@pytest.fixture
def supervisor(tmp_path: Path):
    started: list[Supervisor] = []

    def start(env: dict[str, str]) -> Supervisor:
        sup = Supervisor(tmp_path, env)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        sup.close()


def test_make_run_serves_the_printed_curl_and_stops_cleanly_on_sigterm(supervisor) -> None:
    sup = supervisor(dict(os.environ))  # DATABASE_URL / REDIS_URL: the test infra
    sup.wait_ready()
    out = sup.stdout()
    assert f"http://127.0.0.1:{sup.ingest_port}/api/webhook" in out
    assert f"http://127.0.0.1:{sup.flower_port}/" in out
    assert f"console     http://127.0.0.1:{sup.console_port}/" in out
    # the console's own gunicorn answers
    def console_health() -> dict | None:
        try:
            return requests.get(f"http://127.0.0.1:{sup.console_port}/healthz", timeout=5).json()
        except requests.RequestException:
            return None

    assert wait_for(console_health, timeout=60) == {"status": "ok"}
    assert os.environ["WEBHOOK_SIGNING_SECRETS"].split(",")[0] in out
    # Which channels are live and which go to the outbox (shared.providers).
    assert "  channels:" in out
    for channel in ("email", "sms", "whatsapp"):
        assert f"    {channel}: " in out
    # Flower: the banner names the user and where the password is, never the password.
    secrets_file = sup.var_dir / "dev-secrets.env"
    user, password = re.search(r"FLOWER_BASIC_AUTH=(.*)", secrets_file.read_text()).group(1).split(":", 1)
    assert password not in out
    assert f"basic auth user '{user}'" in out and str(secrets_file) in out

    status, doc = run_printed_curl(sup)
    assert status == 202, doc
    message_id = uuid.UUID(doc["message_id"])

    def filed() -> bool:
        with session_scope() as s:
            return s.scalar(select(Message.id).where(Message.id == message_id)) is not None

    wait_for(filed, timeout=30)

    # A new user's first API key: the printed command, with no DATABASE_URL /
    # REDIS_URL in their shell, then used against the running ingest.
    assert_run_file_recorded(sup)
    use_key_against_ingest(sup, create_key_with_printed_command(sup), message_id)

    # Flower is up behind basic auth (generated dev password, stored 0600).
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    flower = f"http://127.0.0.1:{sup.flower_port}/"

    def flower_up() -> bool:
        try:
            return requests.get(flower, timeout=2).status_code == 401
        except requests.RequestException:
            return False

    wait_for(flower_up, timeout=30, interval=0.3)
    assert requests.get(flower, auth=(user, password), timeout=5).status_code == 200

    children = sup.descendants()
    names = " ".join(" ".join(p.cmdline()) for p in children)
    assert "gunicorn" in names and "worker" in names and "flower" in names
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(60) == 0, sup.stderr()[-3000:]
    assert alive(children) == []
    assert "stopped" in sup.stdout()
    # Stopped: run.env is gone, and the CLI says what is missing.
    assert not (sup.var_dir / "run.env").exists()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    cli = subprocess.run(
        [sys.executable, "-m", "shared.runtime.cli", "list-api-keys"], cwd=ROOT,
        env={**env, "CLINICQ_VAR_DIR": str(sup.var_dir)}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert cli.returncode == 2 and "DATABASE_URL" in cli.stderr


def test_a_child_dying_stops_everything_with_nonzero_exit(supervisor) -> None:
    sup = supervisor(dict(os.environ))
    sup.wait_ready()
    children = sup.descendants()
    worker_main = next(
        p for p in psutil.Process(sup.proc.pid).children()
        if "worker" in p.cmdline() and "celery" in " ".join(p.cmdline())
    )
    worker_main.kill()
    assert sup.proc.wait(60) == 1
    assert "worker (celery) exited unexpectedly" in sup.stderr()
    assert alive(children) == []


def test_bad_setting_is_named_at_startup_with_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "INGEST_PORT": "not-a-port", "CLINICQ_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "shared.runtime.supervisor"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 2
    assert "INGEST_PORT" in out.stderr


def test_port_in_use_is_named_at_startup_with_exit_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "INGEST_PORT": str(port), "CLINICQ_VAR_DIR": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, "-m", "shared.runtime.supervisor"], cwd=ROOT, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert out.returncode == 2
    assert f"INGEST_PORT={port}" in out.stderr


def test_dev_secrets_are_generated_once_kept_0600_and_yield_to_environment(tmp_path: Path) -> None:
    first = dev_secrets(tmp_path, {})
    assert set(first) == {"WEBHOOK_SIGNING_SECRETS", "SECRET_KEY", "FLOWER_BASIC_AUTH"}
    assert first["WEBHOOK_SIGNING_SECRETS"].startswith("whsec_")
    assert stat.S_IMODE((tmp_path / "dev-secrets.env").stat().st_mode) == 0o600
    assert dev_secrets(tmp_path, {}) == first  # survives restarts
    configured = dev_secrets(tmp_path, {"SECRET_KEY": "from-env"})
    assert "SECRET_KEY" not in configured
    # The generated signing secret is accepted by the settings validator.
    from shared.core.config import Settings

    Settings(WEBHOOK_SIGNING_SECRETS=first["WEBHOOK_SIGNING_SECRETS"])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_embedded_postgres_and_redis_start_serve_and_stop_keeping_data(supervisor) -> None:
    env = {
        k: v for k, v in os.environ.items()
        if k not in {
            "DATABASE_URL", "REDIS_URL", "WEBHOOK_SIGNING_SECRETS", "WEBHOOK_SECRET", "SECRET_KEY",
            "PUBLIC_BASE_URL",
        }
    }
    sup = supervisor(env)
    sup.wait_ready(timeout=90)
    out = sup.stdout()
    assert "embedded PostgreSQL" in out and "embedded Redis" in out
    status, doc = run_printed_curl(sup)  # signed with the generated dev secret
    assert status == 202, doc
    # PUBLIC_BASE_URL defaults to the local ingest URL: the status URL works.
    assert doc["status_url"].startswith(sup.base)
    assert requests.get(doc["status_url"], timeout=5).status_code == 200
    # The CLI reaches the embedded servers (their URLs exist only in run.env).
    assert_run_file_recorded(sup)
    use_key_against_ingest(sup, create_key_with_printed_command(sup), uuid.UUID(doc["message_id"]))

    var = str(sup.var_dir)
    servers = [
        p for p in psutil.process_iter(["cmdline"])
        if var in " ".join(p.info["cmdline"] or []) or (
            "redis-server" in " ".join(p.info["cmdline"] or []) and p.ppid() == sup.proc.pid
        )
    ]
    kinds = " ".join(" ".join(p.cmdline()) for p in servers)
    assert "postgres" in kinds and "redis-server" in kinds, kinds

    # What a concurrent pytest session does to /tmp/pytest-of-<user>: the
    # `pgserver` user (root runs PostgreSQL as it) can no longer reach the
    # data dir, so its pg_ctl fails; the server must be stopped all the same.
    mode = sup.var_dir.parent.stat().st_mode
    if os.geteuid() == 0:
        sup.var_dir.parent.chmod(0o700)
    children = sup.descendants()
    sup.proc.send_signal(signal.SIGTERM)
    try:
        assert sup.proc.wait(90) == 0, sup.stderr()[-3000:]
    finally:
        sup.var_dir.parent.chmod(stat.S_IMODE(mode))
    assert alive(children + servers) == []
    # Data kept for the next run.
    assert (sup.var_dir / "postgres" / "PG_VERSION").exists()
    aof = list((sup.var_dir / "redis").glob("appendonly*"))
    assert aof, list((sup.var_dir / "redis").iterdir())


def test_unreachable_database_fails_startup_cleanly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/x",
        "INGEST_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "CONSOLE_PORT": str(free_port()),
        "CLINICQ_VAR_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "shared.runtime.supervisor"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 1
    assert "start-up failed" in out.stderr and "OperationalError" in out.stderr
    assert "starting ingest" not in out.stdout  # nothing was started


def test_cli_ignores_a_stale_run_file_and_says_so(tmp_path: Path) -> None:
    from shared.runtime.runfile import write_run_file

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    write_run_file(tmp_path, {"DATABASE_URL": os.environ["DATABASE_URL"],
                              "REDIS_URL": os.environ["REDIS_URL"]}, int(gone.stdout))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    cli = subprocess.run(
        [sys.executable, "-m", "shared.runtime.cli", "list-api-keys"], cwd=ROOT,
        env={**env, "CLINICQ_VAR_DIR": str(tmp_path)}, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert cli.returncode == 2
    assert "stale" in cli.stderr and "DATABASE_URL" in cli.stderr
