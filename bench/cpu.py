"""CPU seconds spent by the processes a benchmark drives, for "CPU per
request/message" figures (steadier than throughput on a shared machine)."""

from __future__ import annotations

import os
import subprocess
from typing import Any


def _summed_cpu(processes: Any) -> float:
    """User + system CPU of these psutil processes (one that has exited or
    that we may not read counts as 0)."""
    import psutil

    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def process_tree_cpu(proc: subprocess.Popen[bytes]) -> float:
    """A started process and all its descendants (gunicorn's workers,
    Celery's pool children)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        return _summed_cpu([root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0.0


def postgres_cpu() -> float:
    """Every PostgreSQL server process on the machine (backends, WAL writer,
    checkpointer): the local service or the embedded one."""
    import psutil

    return _summed_cpu(
        p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")
    )


def redis_cpu(client: Any) -> float:
    """The Redis server's own CPU, from INFO (it may run under another user)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system
