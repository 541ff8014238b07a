"""Every per-channel list in the tree agrees with the channel table
(shared/core/channels.py): Celery queues and routes, the send tasks and the
workers that define them, the supervisor's workers, the compose services and
the settings they pass, the template folders, the settings lists, the rate
limits and the cost estimates. No servers: files are parsed and pure
functions called.

Each check takes the table as an argument and names what is missing, so the
same checks run against the real table (nothing missing) and against the
table with a fake channel added (every check names it): a channel added to
the table alone fails here, list by list.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml
from celery.app.routes import MapRoute

import celeryconfig
from shared.core import channels, taskqueue
from shared.core.channels import (
    CHANNEL_NAMES,
    CHANNELS,
    QUEUES,
    Channel,
    ProviderRequirement,
    RateLimit,
    UnknownChannel,
    address_kind,
    channels_addressed_to,
)
from shared.core.config import ConfigError, Settings, check_channel_table
from shared.core.enums import IdentityKind

ROOT = Path(__file__).resolve().parents[2]

PIGEON = Channel(
    name="pigeon",
    label="pigeon",
    address_kind=IdentityKind.PHONE.value,
    rate_limits=(RateLimit.named("pigeon"),),
    cost_setting="COST_ESTIMATE_PIGEON",
    providers=MappingProxyType(
        {"": ProviderRequirement("pigeon_provider", ("PIGEON_API_KEY",))}
    ),
)


def _settings() -> Settings:
    return Settings(CLINICQ_DEV_MODE=True)


# --- the checks: each returns what the table has and the tree lacks ------------------


def celery_queues(table: Iterable[Channel]) -> list[str]:
    declared = {queue.name for queue in celeryconfig.task_queues}
    return [row.name for row in table if row.queue not in declared]


def celery_routes(table: Iterable[Channel]) -> list[str]:
    route = MapRoute(celeryconfig.task_routes)
    return [row.name for row in table if route(row.send_task) != {"queue": row.queue}]


def send_tasks(table: Iterable[Channel]) -> list[str]:
    from shared.outbound.create import SEND_TASKS

    return [row.name for row in table if SEND_TASKS.get(row.name) != row.send_task]


def _task_names_defined_in_workers() -> set[str]:
    """The `name=` of every `@app.task(...)` under workers/tasks/ (parsed, not
    imported: importing the worker app needs the servers' URLs)."""
    names = set()
    for path in (ROOT / "workers" / "tasks").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "task":
                for keyword in node.keywords:
                    value = keyword.value
                    if keyword.arg != "name":
                        continue
                    if isinstance(value, ast.Constant):
                        names.add(str(value.value))
                    elif isinstance(value, ast.Name):
                        # Task names are constants of shared/core/taskqueue.py
                        # (`name=SEND_SMS`): resolve them there, the one
                        # place they are spelled.
                        names.add(str(getattr(taskqueue, value.id)))
                    else:
                        raise AssertionError(f"{path.name}: a task name the test cannot read")
    return names


def worker_tasks(table: Iterable[Channel]) -> list[str]:
    defined = _task_names_defined_in_workers()
    return [row.name for row in table if row.send_task not in defined]


def supervisor_workers(table: Iterable[Channel]) -> list[str]:
    from shared.runtime.supervisor import build_children

    served: list[str] = []
    for child in build_children(_settings(), python="python"):
        if "worker" in child.argv and "-Q" in child.argv:
            served += child.argv[child.argv.index("-Q") + 1].split(",")
    assert len(served) == len(set(served)), f"a queue has two supervisor workers: {served}"
    return [row.name for row in table if row.queue not in served]


def compose_services(table: Iterable[Channel]) -> list[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    missing = []
    for row in table:
        service = services.get(f"worker-{row.queue}")
        command = service["command"] if service else []
        if "-Q" not in command or command[command.index("-Q") + 1] != row.queue:
            missing.append(row.name)
    return missing


def compose_settings(table: Iterable[Channel]) -> list[str]:
    """Every setting a channel names is passed to the compose services."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    passed = {entry.split("=", 1)[0] for entry in compose["x-clinicq-env"]}
    return [row.name for row in table if not set(row.settings_named()) <= passed]


def template_folders(table: Iterable[Channel]) -> list[str]:
    from shared.core.templating import CHANNELS as TEMPLATE_CHANNELS
    from shared.core.templating import DEFAULT_DIR

    return [
        row.name
        for row in table
        if row.name not in TEMPLATE_CHANNELS
        or not any((DEFAULT_DIR / row.templates).glob("*.txt"))
    ]


def channel_lists(table: Iterable[Channel]) -> list[str]:
    """The settings, plan and provider registry channel lists."""
    from shared.providers import CHANNELS as PROVIDER_CHANNELS
    from shared.scheduling.plan import SEND_CHANNELS

    quiet_default = _settings().QUIET_HOURS_CHANNELS
    return [
        row.name
        for row in table
        if row.name not in PROVIDER_CHANNELS
        or row.name not in SEND_CHANNELS
        or row.name not in quiet_default
    ]


def channel_enum(table: Iterable[Channel]) -> list[str]:
    """shared.core.enums.Channel (what inbound payloads may name)."""
    from shared.core.enums import Channel as ChannelEnum

    return [row.name for row in table if row.name not in {c.value for c in ChannelEnum}]


def providers(table: Iterable[Channel]) -> list[str]:
    from shared.providers import PROVIDERS

    return [
        row.name
        for row in table
        if any(provider.name not in PROVIDERS for provider in row.providers.values())
    ]


def _rows_failing(table: Iterable[Channel], check: Callable[[Channel], bool]) -> list[str]:
    """The rows for which `check` is false or raises what a missing setting or
    an unknown channel raises."""
    missing = []
    for row in table:
        try:
            ok = check(row)
        except (AttributeError, UnknownChannel, ConfigError):
            ok = False
        if not ok:
            missing.append(row.name)
    return missing


def settings_exist(table: Iterable[Channel]) -> list[str]:
    return _rows_failing(table, lambda row: check_channel_table([row]) is None)


def rate_limits(table: Iterable[Channel]) -> list[str]:
    from shared.outbound.ratelimit import limits_for

    settings = _settings()

    def limited(row: Channel) -> bool:
        limits = limits_for(settings, row.name, "live", "+5511999990000", "+5511988887777")
        return bool(limits) and len(limits) == len(row.rate_limits)

    return _rows_failing(table, limited)


def cost_estimates(table: Iterable[Channel]) -> list[str]:
    from shared.outbound.cost import estimated_cost

    settings = _settings()

    def costed(row: Channel) -> bool:
        amount, _ = estimated_cost(settings, row.name)
        return bool(amount == Decimal(str(getattr(settings, row.cost_setting))))

    return _rows_failing(table, costed)


def sender_only_limits(table: Iterable[Channel]) -> list[str]:
    """delivery.py takes a slot before reading the row only for channels whose
    limits do not need the recipient: the same set as the table's."""
    from shared.outbound.delivery import _SENDER_ONLY_LIMITS

    return [
        row.name
        for row in table
        if (row.name in _SENDER_ONLY_LIMITS) == row.limits_need_recipient
    ]


CHECKS: dict[str, Callable[[Iterable[Channel]], list[str]]] = {
    "celery queues": celery_queues,
    "celery routes": celery_routes,
    "SEND_TASKS": send_tasks,
    "send tasks in workers/tasks": worker_tasks,
    "supervisor workers": supervisor_workers,
    "compose services": compose_services,
    "compose settings": compose_settings,
    "template folders": template_folders,
    "settings/plan/provider channel lists": channel_lists,
    "provider registry": providers,
    "Channel enum": channel_enum,
    "settings named by the table": settings_exist,
    "rate limits": rate_limits,
    "cost estimates": cost_estimates,
    "delivery's sender-only limits": sender_only_limits,
}


@pytest.mark.parametrize("what", CHECKS)
def test_every_channel_list_agrees_with_the_table(what: str) -> None:
    assert CHECKS[what](CHANNELS) == [], f"{what} lacks these channels"


@pytest.mark.parametrize("what", CHECKS)
def test_a_channel_only_in_the_table_is_named_by_every_check(
    what: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake row is known to the lookups too, so the rate-limit and cost
    # code reach the settings it names (which do not exist) instead of
    # stopping at "unknown channel".
    known = MappingProxyType({**channels._BY_NAME, "pigeon": PIGEON})
    monkeypatch.setattr(channels, "_BY_NAME", known)
    assert CHECKS[what]((*CHANNELS, PIGEON)) == ["pigeon"]


def test_the_queue_lists_are_the_tables() -> None:
    assert celeryconfig.QUEUES == QUEUES
    assert [queue.name for queue in celeryconfig.task_queues] == list(QUEUES)
    assert set(CHANNEL_NAMES) < set(QUEUES)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {name for name in services if name.startswith("worker-")} == {
        f"worker-{queue}" for queue in QUEUES
    }
    route = MapRoute(celeryconfig.task_routes)
    for queue in channels.OTHER_QUEUES + (channels.INBOUND_QUEUE,):
        example = queue.tasks.replace("*", "anything")
        assert route(example) == {"queue": queue.name}


def test_address_kinds() -> None:
    assert {name: address_kind(name) for name in ("email", "sms", "whatsapp")} == {
        "email": "email",
        "sms": "phone",
        "whatsapp": "phone",
    }
    assert {"sms", "whatsapp"} <= set(channels_addressed_to("phone"))
    assert "email" not in channels_addressed_to("phone")
    assert channels_addressed_to("chatwoot") == ()
    with pytest.raises(UnknownChannel, match="'web'"):
        address_kind("web")


def test_inbound_only_channels_are_not_sendable() -> None:
    """`web` (the form) and `webchat` (the inbox's website widget) are what
    inbound payloads may name, not rows: nothing is sent "on" them (the
    widget is answered in the inbox, shared/inbox/webchat.py)."""
    from shared.core.channels import is_channel, send_tasks
    from shared.core.enums import Channel as ChannelEnum

    for name in ("web", "webchat"):
        assert name in {c.value for c in ChannelEnum}
        assert not is_channel(name) and name not in send_tasks()
        with pytest.raises(UnknownChannel):
            address_kind(name)


def test_an_unknown_channel_is_an_error_not_a_default() -> None:
    from shared.outbound.cost import estimated_cost
    from shared.outbound.ratelimit import limits_for

    settings = _settings()
    with pytest.raises(UnknownChannel, match="'pigeon'"):
        limits_for(settings, "pigeon", "live", "sender", "to")
    with pytest.raises(UnknownChannel, match="'pigeon'"):
        estimated_cost(settings, "pigeon")
    with pytest.raises(ValueError, match="channel 'pigeon' must be one of: email, sms"):
        Settings(QUIET_HOURS_CHANNELS=["pigeon"])


def test_a_channel_without_a_limit_or_a_cost_cannot_be_declared() -> None:
    with pytest.raises(ValueError, match="'pigeon' has no rate limit"):
        replace(PIGEON, rate_limits=())
    with pytest.raises(ValueError, match="'pigeon' has no cost estimate setting"):
        replace(PIGEON, cost_setting="")
    with pytest.raises(ValueError, match="unknown address kind"):
        replace(PIGEON, address_kind="pager")


def test_start_up_names_a_setting_the_table_names_but_settings_lack() -> None:
    with pytest.raises(
        ConfigError, match="channel pigeon names COST_ESTIMATE_PIGEON, RATE_LIMIT_PIGEON, "
    ):
        check_channel_table([PIGEON])
    whatsapp = channels.channel("whatsapp")
    only_meta = replace(whatsapp, providers=MappingProxyType({"meta": whatsapp.providers["meta"]}))
    with pytest.raises(ConfigError, match="WHATSAPP_PROVIDER must offer exactly"):
        check_channel_table([only_meta])


def test_half_configured_names_the_missing_settings_per_channel() -> None:
    settings = Settings(
        CLINICQ_DEV_MODE=True,
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        TWILIO_AUTH_TOKEN="token",
        WHATSAPP_PROVIDER="meta",
        WHATSAPP_TOKEN="meta-token",
    )
    assert channels.half_configured(settings) == [
        "TWILIO_PHONE_NUMBER must be set: TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN are set, "
        "so sms via twilio_sms is half configured",
        "WHATSAPP_PHONE_NUMBER_ID must be set: WHATSAPP_TOKEN is set, "
        "so whatsapp via meta_whatsapp is half configured",
    ]
