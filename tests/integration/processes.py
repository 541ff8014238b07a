"""Real processes for integration tests: a `celery worker` on the test broker
and the ingest app under gunicorn. Both run in their own process group so a
test can kill one whole (main process and children) without touching pytest."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import wait_for
from tests.infra import ROOT


class WorkerProcess:
    def __init__(self, queues: str, concurrency: int, log_path: Path, extra_env: dict[str, str]):
        self.queues = queues
        self.log_path = log_path
        self.name = f"test-{uuid.uuid4().hex[:8]}@%h"
        env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                "-Q", queues, "-c", str(concurrency), "-P", "prefork",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "-n", self.name, "--loglevel", "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited at start:\n{self.log_text()[-4000:]}")
            return " ready." in self.log_text()

        wait_for(ready, timeout, 0.1)

    def kill(self) -> None:
        """SIGKILL the whole process group: main process and pool children."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
            except ProcessLookupError:
                pass
        self._log.close()


@contextlib.contextmanager
def gunicorn_server(
    log_path: Path, env: dict[str, str] | None = None, workers: int = 2
) -> Iterator[str]:
    """The real app under the real gunicorn configuration on a free port;
    yields its base URL and stops it (whole process group) afterwards."""
    import requests

    from shared.runtime.embedded import free_port, stop_process

    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "ingest/gunicorn_conf.py",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "ingest.app:wsgi()"],
            cwd=ROOT, env=env if env is not None else {**os.environ},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(log_path.read_text())
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=30)
        yield base
    finally:
        stop_process(proc)
