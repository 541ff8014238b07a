"""`python -m bench ingest`: throughput and latency of signed
`POST /api/webhook` against a no-op Flask endpoint, both served by
`ingest/gunicorn_conf.py` in the same run, on loopback.

Load comes from separate processes (multiprocessing), each with a few
threads running a closed loop over raw sockets with pre-built, pre-signed,
distinct requests (every body a different message and `webhook-id`), so the
generator spends as little CPU as possible next to the servers. The two
targets are measured in alternating rounds so machine noise hits both.

Infrastructure: DATABASE_URL / REDIS_URL when set (Redis: a logical database
claimed for the run and flushed afterwards, so no bench task reaches a real
worker), else embedded servers under var/bench-*.

A third target, a bare Redis LPUSH of the body, shows the floor of any
durable publish on the machine at hand.

Goal: real ≥ 0.6× the no-op's req/s and p99 ≤ 3× the no-op's p99.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing as mp
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.cpu import process_tree_cpu, redis_cpu

ROOT = Path(__file__).resolve().parent.parent
PATH = "/api/webhook"
ROUNDS = 8
ROUND_SECONDS = 2.5
WARMUP_SECONDS = 0.5
PROCESSES = 2
THREADS_PER_PROCESS = 4
REQUESTS_PER_CLIENT = 2000  # more than a round uses at these rates (a wrap would replay webhook-ids)


# --- requests -------------------------------------------------------------------


def build_requests(port: int, secret: str, count: int, tag: str) -> list[bytes]:
    """Distinct, signed HTTP/1.1 requests (the seed payload, varied)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ts = str(int(time.time()))
    out = []
    for i in range(count):
        body = orjson.dumps({
            "type": "message",
            "channel": "whatsapp",
            "contact": {
                "name": "João Silva",
                "phone": f"+55119{(10_000_000 + i) % 100_000_000:08d}",
                "email": f"paciente{i}@email.com",
                "cpf": "123.456.789-00",
            },
            "message": {
                "text": f"Gostaria de agendar uma consulta ({tag} {i})",
                "timestamp": "2025-11-20T03:00:00Z",
                "metadata": {"source": "website_form", "page": "/agendamento", "utm_source": "google"},
            },
        })
        msg_id = f"msg_bench_{tag}_{i}_{secrets.token_hex(4)}"
        mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n"
            "Connection: close\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


# --- load generator (runs in child processes) -----------------------------------


def _client(port: int, reqs: list[bytes], start: float, stop: float, lat: list[float], bad: list[int]) -> None:
    i = 0
    while True:
        now = time.monotonic()
        if now >= stop:
            return
        data = reqs[i % len(reqs)]
        i += 1
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        elapsed = time.perf_counter() - t0
        if now < start:
            continue  # warm-up
        status = b"".join(chunks)[9:12]
        if status != b"202":
            bad.append(int(status) if status.isdigit() else 0)
        lat.append(elapsed)


def _generator(port: int, reqs: list[list[bytes]], ready: Any, out: mp.Queue) -> None:
    # The clock starts when every generator process is up (spawning them can
    # take a while on a busy machine); CLOCK_MONOTONIC is system-wide.
    ready.wait(60)
    start = time.monotonic() + WARMUP_SECONDS
    stop = start + ROUND_SECONDS
    lat: list[float] = []
    bad: list[int] = []
    threads = [
        threading.Thread(target=_client, args=(port, r, start, stop, lat, bad)) for r in reqs
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((lat, bad))


@dataclass
class Result:
    latencies: list[float]
    errors: list[int]
    seconds: float
    # CPU seconds spent during the round (warm-up included) by the server's
    # gunicorn processes, redis-server and the load generator.
    cpu: dict[str, float] | None = None

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(port: int, reqs: list[bytes], server: subprocess.Popen[bytes], rclient: object) -> Result:
    per_client = len(reqs) // (PROCESSES * THREADS_PER_PROCESS)
    slices = [reqs[i * per_client:(i + 1) * per_client] for i in range(PROCESSES * THREADS_PER_PROCESS)]
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    ready = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(
            target=_generator,
            args=(port, slices[p * THREADS_PER_PROCESS:(p + 1) * THREADS_PER_PROCESS], ready, out),
        )
        for p in range(PROCESSES)
    ]
    cpu0 = (process_tree_cpu(server), redis_cpu(rclient), os.times())
    for p in procs:
        p.start()
    lat: list[float] = []
    bad: list[int] = []
    for _ in procs:
        got_lat, got_bad = out.get(timeout=ROUND_SECONDS + 60)
        lat += got_lat
        bad += got_bad
    for p in procs:
        p.join()
    t1 = os.times()
    cpu = {
        "gunicorn": process_tree_cpu(server) - cpu0[0],
        "redis": redis_cpu(rclient) - cpu0[1],
        "loadgen": (t1.children_user + t1.children_system)
        - (cpu0[2].children_user + cpu0[2].children_system),
    }
    return Result(lat, bad, ROUND_SECONDS, cpu)


# --- servers --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "ingest" / "gunicorn_conf.py"),
         "--bind", f"127.0.0.1:{port}", app],
        cwd=ROOT, env=env, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn {app} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"gunicorn {app} did not start")


def wait_serving(port: int, request: bytes, timeout: float = 90) -> None:
    """gunicorn's port accepts before its workers have imported the app: wait
    until a worker answers a real request with 202."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                if sock.recv(12)[9:12] == b"202":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"no 202 from 127.0.0.1:{port} within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def infrastructure(cleanups: list) -> tuple[str, str, str]:
    """(DATABASE_URL, REDIS_URL, where) — configured, else embedded."""
    import redis

    from shared.runtime.embedded import start_postgres, start_redis, stop_postgres, stop_process

    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    where = []
    if not database_url:
        database_url, server = start_postgres(ROOT / "var" / "bench-postgres")
        cleanups.append(lambda: stop_postgres(server))
        where.append("embedded PostgreSQL")
    else:
        where.append("PostgreSQL from DATABASE_URL")
    if not redis_url:
        redis_url, proc = start_redis(ROOT / "var" / "bench-redis", appendonly=True)
        cleanups.append(lambda: stop_process(proc))
        where.append("embedded Redis (AOF everysec)")
    else:
        where.append("Redis from REDIS_URL")
    # Our own logical database: bench tasks must never reach a real worker.
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    client = redis.Redis.from_url(base + "/0")
    for db in range(15, 0, -1):
        if client.set(f"clinicq:test-db-lock:{db}", f"bench-{os.getpid()}", nx=True, ex=3600):
            break
    else:
        raise SystemExit("no free Redis logical database for the benchmark")
    bench_url = f"{base}/{db}"
    redis.Redis.from_url(bench_url).flushdb()

    def release() -> None:
        redis.Redis.from_url(bench_url).flushdb()
        client.delete(f"clinicq:test-db-lock:{db}")

    cleanups.append(release)
    return database_url, bench_url, ", ".join(where) + f" (db {db})"


def main() -> None:
    cleanups: list = []
    servers: list[subprocess.Popen[bytes]] = []
    try:
        database_url, redis_url, where = infrastructure(cleanups)
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "WEBHOOK_SIGNING_SECRETS": secret,
            "LOG_LEVEL": "WARNING",
        }
        env.pop("WEBHOOK_SECRET", None)
        import redis

        rclient = redis.Redis.from_url(redis_url)
        targets = {
            "no-op": "bench.noop_app:app",
            "lpush": "bench.noop_app:lpush_app",
            "webhook": "ingest.app:wsgi()",
        }
        ports = {name: _free_port() for name in targets}
        by_name = {}
        for name, app in targets.items():
            by_name[name] = start_gunicorn(app, ports[name], env)
            servers.append(by_name[name])
        workers = env.get("INGEST_WORKERS") or str(max(2, os.cpu_count() or 1))  # as gunicorn_conf.py
        clients = PROCESSES * THREADS_PER_PROCESS
        n = REQUESTS_PER_CLIENT * clients
        print(
            f"ingest bench: {os.cpu_count()} cores, gunicorn ingest/gunicorn_conf.py "
            f"({workers} sync workers each), {clients} closed-loop clients in {PROCESSES} "
            f"processes, {ROUNDS} alternating rounds x {ROUND_SECONDS:.1f} s, loopback; {where}",
            flush=True,
        )
        # Every worker booted and warm (lazy imports, first connections) before
        # anything is measured: one unmeasured round per target.
        for name in targets:
            wait_serving(ports[name], build_requests(ports[name], secret, 1, f"ready-{name}")[0])
            measure(ports[name], build_requests(ports[name], secret, n, f"warm-{name}"), by_name[name], rclient)
        results: dict[str, list[Result]] = {name: [] for name in targets}
        for r in range(ROUNDS):
            for name in targets:
                reqs = build_requests(ports[name], secret, n, f"{name}{r}")
                results[name].append(measure(ports[name], reqs, by_name[name], rclient))
        merged = {
            name: Result(
                [x for res in rs for x in res.latencies],
                [x for res in rs for x in res.errors],
                sum(res.seconds for res in rs),
                {k: sum((res.cpu or {})[k] for res in rs) for k in ("gunicorn", "redis", "loadgen")},
            )
            for name, rs in results.items()
        }
        for name, res in merged.items():
            print(
                f"  {name:8s} {res.rps:8.1f} req/s   p50 {res.pct(0.50):6.2f} ms   "
                f"p99 {res.pct(0.99):6.2f} ms   (n={len(res.latencies)}, non-202={len(res.errors)})",
                flush=True,
            )
            # Approximate: CPU over the whole round (incl. warm-up) per measured request.
            per = {k: v / len(res.latencies) * 1000 for k, v in (res.cpu or {}).items()}
            print(
                "           CPU per request: "
                + ", ".join(f"{k} {v:.3f} ms" for k, v in per.items()),
                flush=True,
            )
        base, real, floor = merged["no-op"], merged["webhook"], merged["lpush"]
        print(
            f"  lpush reference: {floor.rps / base.rps:.2f}x the no-op's throughput, "
            f"p99 {floor.pct(0.99) / base.pct(0.99):.2f}x (one bare Redis LPUSH per request)",
            flush=True,
        )
        throughput = real.rps / base.rps
        p99 = real.pct(0.99) / base.pct(0.99)
        ok = throughput >= 0.6 and p99 <= 3.0 and not real.errors
        print(
            f"  ratio    throughput {throughput:.2f}x (goal >= 0.60)   "
            f"p99 {p99:.2f}x (goal <= 3.00)   -> {'GOAL MET' if ok else 'GOAL MISSED'}",
            flush=True,
        )
        # Machine noise (other processes) moves all figures together within a
        # round; the per-round ratios show how steady the comparison is.
        per_round = [
            w.rps / b.rps for w, b in zip(results["webhook"], results["no-op"], strict=True)
        ]
        print(
            "  per-round throughput ratios: "
            + ", ".join(f"{x:.2f}" for x in per_round)
            + f" (median {sorted(per_round)[len(per_round) // 2]:.2f})",
            flush=True,
        )
        if real.errors:
            print(f"  webhook non-202 statuses: {sorted(set(real.errors))}", flush=True)
    finally:
        for proc in servers:
            stop_group(proc)
        for fn in reversed(cleanups):
            fn()


if __name__ == "__main__":
    main()
