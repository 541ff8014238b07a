"""Fault suite: `python -m bench chaos` (full, by hand) and `--short` (CI).

While a steady load of signed webhooks (SMS messages, each from a new
patient, so each is filed, triaged and acknowledged by SMS exactly once)
runs against the real stack — gunicorn ingest, an inbound Celery worker, a
worker for the other queues, the scheduler — each part is killed with
SIGKILL in turn and restarted: ingest, each worker, the scheduler, Redis,
PostgreSQL; then PostgreSQL is stopped for longer than the retry budget the
inbound task used to have (20 attempts: ~18 minutes at its former 60 s cap;
the short form caps the backoff at 1 s, so 20 attempts take ~15 s, and
stops it for 22 s; tests/integration/test_durability.py counts the attempts of one
task through such an outage).

PostgreSQL and Redis are private to the run (their own data directories
and ports under a temp dir, started from the machine's binaries), so the
kills hit nothing anyone else uses. The sender behaves like a real one: a
request that fails (connection refused while ingest restarts, 503 while
Redis is down) is retried with the same `webhook-id`.

Printed: webhooks answered 202, messages filed, lost (202 but never filed:
must be 0), reactions and acknowledgements still missing, and duplicate
sends counted on the fake Twilio (two provider requests for one outbound
message, or two acknowledgements for one patient: must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_INBOUND_ATTEMPTS = 20


def say(text: str) -> None:
    print(f"chaos: {text}", flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def _killpg(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(20)


# --- private PostgreSQL and Redis ----------------------------------------------------


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{name} not found: the fault suite needs PostgreSQL's binaries")


class PrivatePostgres:
    """A PostgreSQL cluster of our own (never the machine's shared one)."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "pgdata"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._uid = self._gid = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            for user in ("postgres", "pgserver", "nobody"):
                with contextlib.suppress(KeyError):
                    entry = pwd.getpwnam(user)
                    self._uid, self._gid = entry.pw_uid, entry.pw_gid
                    break
            directory.chmod(0o755)
        self.data.mkdir(parents=True)
        if self._uid is not None:
            os.chown(self.data, self._uid, self._gid)
        subprocess.run(
            [_pg_binary("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--no-sync"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=self._demote,  # noqa: PLW1509 - only drops privileges
        )

    def _demote(self) -> None:
        if self._gid is not None and self._uid is not None:
            os.setgid(self._gid)
            os.setuid(self._uid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/clinicq"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_pg_binary("postgres"), "-D", str(self.data), "-p", str(self.port),
             "-k", str(self.data), "-c", "listen_addresses=127.0.0.1",
             "-c", "max_connections=200", "-c", "fsync=on"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=self._demote,  # noqa: PLW1509 - only drops privileges
        )
        import psycopg

        def accepts() -> bool:
            try:
                psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=1
                ).close()
                return True
            except psycopg.OperationalError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError("postgres exited at start") from None
                return False

        _wait(accepts, 60, "PostgreSQL accepting connections", 0.2)

    def create_database(self) -> None:
        import psycopg

        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True
        ) as conn:
            conn.execute('CREATE DATABASE "clinicq"')

    def kill9(self) -> None:
        """SIGKILL the postmaster and its backends (a crash), wait until gone."""
        import psutil

        assert self.proc is not None
        family = [self.proc.pid]
        with contextlib.suppress(psutil.NoSuchProcess):
            family += [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(20)

        def alive(pid: int) -> bool:
            try:
                return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return False

        _wait(lambda: not any(alive(p) for p in family), 20, "PostgreSQL processes gone")

    def stop(self) -> None:
        """Fast shutdown (SIGINT): what an operator's restart does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = directory / "redis"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from shared.runtime.embedded import start_redis

        _, self.proc = start_redis(self.dir, port=self.port, appendonly=True)

    def kill9(self) -> None:
        assert self.proc is not None
        _killpg(self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _killpg(self.proc, signal.SIGTERM)


# --- our processes -------------------------------------------------------------------


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready: Any = None  # callable -> bool
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            return bool(self.ready()) if self.ready else True

        _wait(up, timeout, f"{self.name} ready", 0.2)

    def kill9(self) -> None:
        assert self.proc is not None
        _killpg(self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _killpg(self.proc, signal.SIGTERM)
            _killpg(self.proc)


def _log_has(path: Path, text: str, after: int) -> Any:
    def check() -> bool:
        try:
            with open(path, "rb") as fh:
                fh.seek(after)
                return text.encode() in fh.read()
        except OSError:
            return False

    return check


# --- the load ------------------------------------------------------------------------


@dataclass
class Load:
    url: str
    rate: float
    retry_for: float
    accepted: dict[str, str] = field(default_factory=dict)  # webhook-id -> message id
    phones: dict[str, str] = field(default_factory=dict)  # message id -> patient phone
    gave_up: int = 0
    failed_attempts: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: int = 0

    def run(self, threads: int = 4) -> list[threading.Thread]:
        workers = [
            threading.Thread(target=self._sender, args=(i, threads), daemon=True)
            for i in range(threads)
        ]
        for t in workers:
            t.start()
        return workers

    def _sender(self, index: int, threads: int) -> None:
        import requests
        from standardwebhooks import Webhook

        signer = Webhook(SIGNING_SECRET)
        session = requests.Session()
        period = threads / self.rate
        n = 0
        next_at = time.monotonic() + index * period / threads
        while not self.stop_event.is_set():
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += period
            n += 1
            phone = f"+551198{index % 10}{n:06d}"  # valid mobiles, one per message
            webhook_id = f"chaos_{uuid.uuid4().hex}"
            body = (
                '{"type":"message","channel":"sms","contact":{"name":"Paciente Teste",'
                f'"phone":"{phone}"}},"message":{{"text":"Quero marcar uma consulta"}}}}'
            )
            with self.lock:
                self.pending += 1
            message_id = self._post_until_accepted(session, signer, webhook_id, body)
            with self.lock:
                self.pending -= 1
                if message_id is None:
                    self.gave_up += 1
                else:
                    self.accepted[webhook_id] = message_id
                    self.phones[message_id] = phone

    def _post_until_accepted(self, session: Any, signer: Any, webhook_id: str,
                             body: str) -> str | None:
        import requests

        deadline = time.monotonic() + self.retry_for
        while time.monotonic() < deadline:
            headers = {
                "webhook-id": webhook_id,
                "webhook-timestamp": str(int(time.time())),
                "webhook-signature": signer.sign(webhook_id, datetime.now(UTC), body),
                "Content-Type": "application/json",
            }
            try:
                resp = session.post(f"{self.url}/api/webhook", data=body.encode(),
                                    headers=headers, timeout=5)
                if resp.status_code == 202:
                    return str(resp.json()["message_id"])
                if resp.status_code < 500:
                    return None  # refused for good: the sender would not retry

            except requests.RequestException:
                session.close()
            with self.lock:
                self.failed_attempts += 1
            time.sleep(0.5)
        return None


# --- the run -------------------------------------------------------------------------


@dataclass
class Profile:
    name: str
    rate: float  # webhooks per second
    gap: float  # seconds between faults
    outage: float  # PostgreSQL stopped this long
    drain: float  # longest wait for the backlog after the load stops
    env: dict[str, str]


SHORT = Profile(
    name="short", rate=2.0, gap=3.0, outage=22.0, drain=90.0,
    env={
        # Budgets shrunk so the run fits CI; each stays in the proportion
        # production keeps (countdowns < visibility timeouts, rule 3).
        "INBOUND_RETRY_BACKOFF_MAX_SECONDS": "1",
        "INBOUND_VISIBILITY_TIMEOUT": "10",
        "CELERY_VISIBILITY_TIMEOUT": "15",
        "MAX_RETRY_BACKOFF_SECONDS": "5",
        "SCHEDULER_MAINTENANCE_SECONDS": "3",
        "SCHEDULER_TICK_SECONDS": "3",
        "REACT_REDRIVE_AFTER_SECONDS": "8",
        # The send task's hard time limit stays below the stuck threshold
        # (settings refuse the reverse: a running send judged abandoned).
        "SEND_TASK_TIME_LIMIT_SECONDS": "6",
        "RECONCILE_STUCK_AFTER_SECONDS": "8",
        "PROVIDER_READ_TIMEOUT_SECONDS": "2",
        "PROVIDER_CONNECT_TIMEOUT_SECONDS": "1",
    },
)
FULL = Profile(
    name="full", rate=1.0, gap=15.0, outage=19 * 60.0, drain=900.0,
    env={
        # Production retry budgets; visibility timeouts shortened only so the
        # other queues' killed tasks come back within the drain.
        "CELERY_VISIBILITY_TIMEOUT": "120",
        "MAX_RETRY_BACKOFF_SECONDS": "60",
    },
)


@dataclass
class Report:
    accepted: int
    gave_up: int
    failed_attempts: int
    filed: int
    lost: int
    not_reacted: int
    acks_missing: int
    duplicate_sends: int
    duplicate_acks: int
    dead_letters: int
    most_outage_retries: int
    faults: list[str]
    seconds: float

    def lines(self) -> list[str]:
        return [
            f"webhooks answered 202: {self.accepted} (sender retries: {self.failed_attempts}, "
            f"never accepted: {self.gave_up})",
            f"messages filed: {self.filed}",
            f"lost (202 but not filed): {self.lost}",
            f"reactions missing: {self.not_reacted}; acknowledgements not sent: "
            f"{self.acks_missing}",
            f"duplicate sends on the fake Twilio: {self.duplicate_sends} "
            f"(two requests for one outbound message); duplicate acknowledgements: "
            f"{self.duplicate_acks}",
            f"dead letters: {self.dead_letters}",
            f"most outage retries of one inbound task: {self.most_outage_retries} "
            f"(the former budget gave up after {OLD_INBOUND_ATTEMPTS})",
            f"faults: {', '.join(self.faults)}",
            f"took {self.seconds:.0f} s",
        ]


def run(profile: Profile, workdir: Path | None = None) -> Report:  # noqa: PLR0915 - a script
    from tests.fakes import FakeTwilio

    started = time.monotonic()
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="clinicq-chaos-"))
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Its own temp dir: PostgreSQL runs as another user and must reach it
    # (pytest's tmp_path is private to root).
    pg_dir = Path(tempfile.mkdtemp(prefix="clinicq-chaos-pg-"))
    postgres = PrivatePostgres(pg_dir)
    redis_server = PrivateRedis(workdir)
    fake = FakeTwilio().start()
    parts: list[Part] = []
    faults: list[str] = []
    load: Load | None = None
    try:
        postgres.start()
        postgres.create_database()
        redis_server.start()
        ingest_port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "PYTEST"))},
            "DATABASE_URL": postgres.url,
            "REDIS_URL": redis_server.url,
            "SECRET_KEY": "chaos-secret-key-not-for-production",
            "WEBHOOK_SIGNING_SECRETS": SIGNING_SECRET,
            "WEBHOOK_SECRET": "",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{ingest_port}",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
            "AUTO_ACK_ENABLED": "true",
            "AUTOMATIONS_ENABLED": "true",
            # Every accepted message must get its acknowledgement: the global
            # flood cap (AUTO_ACKS_PER_HOUR, 100 by default) would otherwise
            # withhold them once a fast machine accepts more than 100.
            "AUTO_ACKS_PER_HOUR": "1000000",
            "TEAM_ALERTS_ENABLED": "false",
            "QUIET_HOURS_CHANNELS": "",
            "RATE_LIMIT_SMS": "10000/second",
            "CELERY_PREFETCH_MULTIPLIER": "1",
            "INBOX_PROVIDER": "none",
            **fake.env(),
            **profile.env,
        }
        for name in ("ONCALL_PHONE", "EMAIL_MEDICO", "EMAIL_FINANCEIRO", "EMAIL_SUPORTE",
                     "IMAP_HOST", "SMTP_HOST"):
            env.pop(name, None)
        subprocess.run([sys.executable, "-m", "shared.runtime.migrate"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)

        python = sys.executable
        celery = [python, "-m", "celery", "-A", "workers.app", "worker", "-P", "prefork",
                  "--without-gossip", "--without-mingle", "--without-heartbeat",
                  "--loglevel", "INFO"]

        def ingest_ready() -> bool:
            return _answers(ingest_port)

        ingest = Part("ingest", [python, "-m", "gunicorn", "-c", "ingest/gunicorn_conf.py",
                                 "--bind", f"127.0.0.1:{ingest_port}", "--workers", "2",
                                 "ingest.app:wsgi()"], env, logs / "ingest.log", ingest_ready)
        inbound = Part("inbound worker", [*celery, "-Q", "inbound", "-c", "2",
                                          "-n", "inbound@chaos"], env, logs / "inbound.log")
        others = Part("other worker", [*celery, "-Q", "email,sms,whatsapp,inbox,maintenance",
                                       "-c", "2", "-n", "others@chaos"], env,
                      logs / "others.log")
        scheduler = Part("scheduler", [python, "-m", "scheduler"], env, logs / "scheduler.log")
        parts = [ingest, inbound, others, scheduler]
        for part in (inbound, others):
            part.ready = _log_has(part.log, " ready.", 0)
        for part in parts:
            part.start()
        for part in parts:
            part.wait_ready()
        say(f"stack up in {time.monotonic() - started:.0f} s (private PostgreSQL :{postgres.port}"
            f", Redis :{redis_server.port}, logs in {logs})")

        load = Load(f"http://127.0.0.1:{ingest_port}", profile.rate,
                    retry_for=max(120.0, profile.outage + 60))
        senders = load.run()

        def restart(part: Part) -> None:
            # Not waited for: the next fault comes while it is still starting
            # (its readiness is checked before the drain).
            offset = part.log.stat().st_size if part.log.exists() else 0
            if part in (inbound, others):
                part.ready = _log_has(part.log, " ready.", offset)
            part.start()

        def fault(name: str, action: Any) -> None:
            time.sleep(profile.gap)
            t = time.monotonic()
            action()
            faults.append(f"{name} ({time.monotonic() - t:.0f} s)")
            say(f"{name}: done")

        for part in parts:
            fault(f"kill -9 {part.name}", lambda p=part: (p.kill9(), restart(p)))
        fault("kill -9 Redis", lambda: (redis_server.kill9(), redis_server.start()))
        fault("kill -9 PostgreSQL", lambda: (postgres.kill9(), postgres.start()))

        def outage() -> None:
            postgres.stop()
            say(f"PostgreSQL stopped for {profile.outage:.0f} s")
            time.sleep(profile.outage)
            postgres.start()

        fault("PostgreSQL stopped", outage)
        time.sleep(profile.gap)
        load.stop_event.set()
        for part in parts:
            part.wait_ready()
        for t in senders:
            t.join(load.retry_for + 10)
        say(f"load stopped: {len(load.accepted)} accepted; draining")
        drain_started = time.monotonic()
        counts = _drain(postgres.url, load, fake, profile.drain)
        say(f"drained in {time.monotonic() - drain_started:.0f} s")
        return Report(
            accepted=len(load.accepted),
            gave_up=load.gave_up,
            failed_attempts=load.failed_attempts,
            faults=faults,
            seconds=time.monotonic() - started,
            most_outage_retries=_most_retries(inbound.log),
            **counts,
        )
    finally:
        if load is not None:
            load.stop_event.set()
        for part in reversed(parts):
            part.stop()
        redis_server.stop()
        postgres.stop()
        fake.stop()
        shutil.rmtree(pg_dir, ignore_errors=True)
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _most_retries(log: Path) -> int:
    """Most "infrastructure unreachable" retries logged for one task id."""
    import orjson

    per_task: Counter[str] = Counter()
    for line in log.read_bytes().splitlines():
        if b"infrastructure unreachable" not in line:
            continue
        with contextlib.suppress(orjson.JSONDecodeError):
            per_task[str(orjson.loads(line).get("task_id"))] += 1
    return max(per_task.values(), default=0)


def _drain(db_url: str, load: Load, fake: Any, timeout: float) -> dict[str, int]:
    import psycopg

    accepted = set(load.accepted.values())

    def measure() -> dict[str, int]:
        with psycopg.connect(db_url, connect_timeout=5) as conn:
            inbound = conn.execute(
                "SELECT id::text, reacted_at IS NOT NULL FROM messages WHERE direction = 'inbound'"
            ).fetchall()
            acks = conn.execute(
                "SELECT id::text, to_address FROM messages WHERE purpose = 'auto_reply'"
            ).fetchall()
            dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        filed = {mid for mid, _ in inbound} & accepted
        reacted = {mid for mid, done in inbound if done} & accepted
        sends = Counter(
            r.form.get("StatusCallback", "").rpartition("mid=")[2] for r in fake.sends()
        )
        sent_ack_ids = {ack_id for ack_id, _ in acks if sends.get(ack_id)}
        acks_per_phone = Counter(to for _, to in acks)
        return {
            "filed": len(filed),
            "lost": len(accepted - filed),
            "not_reacted": len(accepted - reacted),
            "acks_missing": max(0, len(accepted) - len(sent_ack_ids)),
            "duplicate_sends": sum(n - 1 for n in sends.values() if n > 1),
            "duplicate_acks": sum(n - 1 for n in acks_per_phone.values() if n > 1),
            "dead_letters": int(dead),
        }

    deadline = time.monotonic() + timeout
    while True:
        try:
            counts = measure()
        except psycopg.OperationalError:
            counts = None
        if counts and not counts["lost"] and not counts["not_reacted"] \
                and not counts["acks_missing"]:
            time.sleep(2)  # late duplicates would show up now
            return measure()
        if time.monotonic() > deadline:
            return counts or measure()
        time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI form (~90 s)")
    parser.add_argument("--outage", type=float, help="seconds PostgreSQL stays stopped")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help="run in DIR and keep its logs and data")
    args = parser.parse_args(sys.argv[2:] if argv is None else argv)
    profile = SHORT if args.short else FULL
    if args.outage is not None:
        profile = Profile(**{**profile.__dict__, "outage": args.outage})
    say(f"{profile.name} form: {profile.rate:.0f} webhooks/s, a fault every {profile.gap:.0f} s, "
        f"PostgreSQL stopped {profile.outage:.0f} s")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    report = run(profile, args.keep)
    for line in report.lines():
        print(f"  {line}", flush=True)
    if report.lost or report.duplicate_sends or report.duplicate_acks:
        raise SystemExit(1)
