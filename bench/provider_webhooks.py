"""`python -m bench provider_webhooks`: throughput and latency of the inbound
provider webhooks — `POST /webhooks/meta` (HMAC-SHA256 over the raw body,
parse, one publish per message) and `POST /webhooks/twilio` (the twilio SDK's
RequestValidator, form parse, phone normalization, one publish) — against the
no-op Flask endpoint of bench/noop_app.py, all served by
`ingest/gunicorn_conf.py` in the same run, measured in alternating rounds.

Every request is distinct (its own wamid / MessageSid), so every one is a real
publish, not a dedupe hit. Infrastructure as in bench/ingest.py (embedded or
DATABASE_URL / REDIS_URL, a Redis logical database of its own, flushed after).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing as mp
import os
import secrets
import socket
import threading
import time
import uuid
from urllib.parse import urlencode

import orjson

from bench.ingest import infrastructure, start_gunicorn, stop_group

ROUNDS = 2
ROUND_SECONDS = 6.0
WARMUP_SECONDS = 1.0
PROCESSES = 2
THREADS_PER_PROCESS = 4
REQUESTS_PER_CLIENT = 2500
META_SECRET = "bench-meta-app-secret"
TWILIO_TOKEN = "bench-twilio-auth-token"


def _http(port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def meta_requests(port: int, count: int) -> list[bytes]:
    out = []
    for i in range(count):
        # 12-digit wa_id without the ninth digit, like Meta sends Brazilian mobiles.
        wa_id = f"5554{99_000_000 + i % 1_000_000}"
        body = orjson.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "102290129340398",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "15550783881",
                                        "phone_number_id": "106540352242922",
                                    },
                                    "contacts": [
                                        {"profile": {"name": "Ana Souza"}, "wa_id": wa_id}
                                    ],
                                    "messages": [
                                        {
                                            "from": wa_id,
                                            "id": f"wamid.{uuid.uuid4().hex}",
                                            "timestamp": str(int(time.time())),
                                            "type": "text",
                                            "text": {"body": f"Olá, gostaria de agendar ({i})"},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        )
        sig = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()
        out.append(
            _http(
                port,
                "/webhooks/meta",
                body,
                {"Content-Type": "application/json", "X-Hub-Signature-256": sig},
            )
        )
    return out


def twilio_requests(port: int, count: int, public_base: str) -> list[bytes]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_TOKEN)
    out = []
    for i in range(count):
        form = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": f"+55119{(10_000_000 + i) % 100_000_000:08d}",
            "To": "+5554933334444",
            "Body": f"Oi, queria remarcar ({i})",
            "NumMedia": "0",
        }
        signature = validator.compute_signature(public_base + "/webhooks/twilio", form)
        out.append(
            _http(
                port,
                "/webhooks/twilio",
                urlencode(form).encode(),
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "X-Twilio-Signature": signature,
                },
            )
        )
    return out


def noop_requests(port: int, count: int) -> list[bytes]:
    body = orjson.dumps({"type": "message", "text": "Olá, gostaria de agendar"})
    return [_http(port, "/api/webhook", body, {"Content-Type": "application/json"})] * count


def _client(port: int, reqs: list[bytes], start: float, stop: float, lat: list, bad: list) -> None:
    i = 0
    while (now := time.monotonic()) < stop:
        data = reqs[i % len(reqs)]
        i += 1
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(data)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        elapsed = time.perf_counter() - t0
        if now < start:
            continue
        status = b"".join(chunks)[9:12]
        if status not in (b"200", b"202"):
            bad.append(status.decode(errors="replace"))
        lat.append(elapsed)


def _generator(
    port: int, slices: list[list[bytes]], start: float, stop: float, out: mp.Queue
) -> None:
    lat: list[float] = []
    bad: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(port, s, start, stop, lat, bad)) for s in slices
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((lat, bad))


def measure(port: int, reqs: list[bytes]) -> tuple[list[float], list[str]]:
    clients = PROCESSES * THREADS_PER_PROCESS
    per = len(reqs) // clients
    slices = [reqs[i * per : (i + 1) * per] for i in range(clients)]
    start = time.monotonic() + WARMUP_SECONDS + 0.3
    stop = start + ROUND_SECONDS
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(
            target=_generator,
            args=(
                port,
                slices[p * THREADS_PER_PROCESS : (p + 1) * THREADS_PER_PROCESS],
                start,
                stop,
                out,
            ),
        )
        for p in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    lat: list[float] = []
    bad: list[str] = []
    for _ in procs:
        got_lat, got_bad = out.get(timeout=ROUND_SECONDS + 60)
        lat += got_lat
        bad += got_bad
    for p in procs:
        p.join()
    return lat, bad


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    cleanups: list = []
    servers = []
    try:
        database_url, redis_url, where = infrastructure(cleanups)
        real_port, noop_port = _free_port(), _free_port()
        public_base = f"http://127.0.0.1:{real_port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "WEBHOOK_SIGNING_SECRETS": "whsec_" + base64.b64encode(os.urandom(32)).decode(),
            "META_APP_SECRET": META_SECRET,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "PUBLIC_BASE_URL": public_base,
            "LOG_LEVEL": "WARNING",
        }
        env.pop("WEBHOOK_SECRET", None)
        servers.append(start_gunicorn("ingest.app:wsgi()", real_port, env))
        servers.append(start_gunicorn("bench.noop_app:app", noop_port, env))
        clients = PROCESSES * THREADS_PER_PROCESS
        n = REQUESTS_PER_CLIENT * clients
        print(
            f"provider webhooks bench: {os.cpu_count()} cores, gunicorn ingest/gunicorn_conf.py, "
            f"{clients} closed-loop clients in {PROCESSES} processes, {ROUNDS} alternating rounds "
            f"x {ROUND_SECONDS:.0f} s, loopback; {where}",
            flush=True,
        )
        results: dict[str, tuple[list[float], list[str]]] = {
            "no-op": ([], []),
            "meta": ([], []),
            "twilio": ([], []),
        }
        for _ in range(ROUNDS):
            for name in results:
                if name == "no-op":
                    reqs, port = noop_requests(noop_port, n), noop_port
                elif name == "meta":
                    reqs, port = meta_requests(real_port, n), real_port
                else:
                    reqs, port = twilio_requests(real_port, n, public_base), real_port
                lat, bad = measure(port, reqs)
                results[name][0].extend(lat)
                results[name][1].extend(bad)
        seconds = ROUNDS * ROUND_SECONDS
        base_rps = len(results["no-op"][0]) / seconds
        base_p99 = _pct(results["no-op"][0], 0.99)
        for name, (lat, bad) in results.items():
            rps = len(lat) / seconds
            line = (
                f"  {name:7s} {rps:8.1f} req/s   p50 {_pct(lat, 0.5):6.2f} ms   "
                f"p99 {_pct(lat, 0.99):6.2f} ms   (n={len(lat)}, non-2xx={len(bad)})"
            )
            if name != "no-op":
                line += f"   {rps / base_rps:.2f}x no-op throughput, p99 {_pct(lat, 0.99) / base_p99:.2f}x"
            print(line, flush=True)
            if bad:
                print(f"          non-2xx statuses: {sorted(set(bad))}", flush=True)
    finally:
        for proc in servers:
            stop_group(proc)
        for fn in reversed(cleanups):
            fn()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
