"""pt-BR message templates, in editable files under shared/templates/ (or
TEMPLATES_DIR):

    email/<name>.subject.txt, email/<name>.txt, email/<name>.html
    sms/<name>.txt
    whatsapp/<name>.txt + whatsapp/templates.json (approved-template mapping)
    <channel>/<name>.buttons   quick-reply buttons, one `Label|PAYLOAD_PREFIX` a line

A button's payload is its prefix + the id it acts on: `CONFIRM_`,
`RESCHEDULE_`, `CANCEL_` take the data's `appointment_id`, `CLAIM_` the
waitlist offer's `offer_id` (BUTTON_SUBJECT). A `.buttons` sidecar replaces
the `buttons` of templates.json for that template.

    telegram/<name>.txt (Telegram shows the sidecar's buttons as its own
        inline keyboard: Rendered.keyboard)

Rendering is strict: a variable the template uses but the data lacks is a
`TemplateDataError` naming it (the API answers 400), never a blank in a
patient's message. HTML is autoescaped (a bare jinja2.Environment is not); the
environment is sandboxed because clinic staff edit these files.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from shared.core.channels import CHANNEL_NAMES
from shared.core.config import get_settings
from shared.core.errors import FieldError

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "templates"  # shared/templates/
CHANNELS = CHANNEL_NAMES  # each channel's folder bears its name


class TemplateError(FieldError):
    """A template request that cannot be rendered; `field` names what is wrong."""


class UnknownTemplate(TemplateError):
    pass


class TemplateDataError(TemplateError):
    pass


@dataclass
class Rendered:
    text: str
    subject: str | None = None
    html: str | None = None
    # WhatsApp approved-template parameters and quick-reply payloads.
    params: list[str] = field(default_factory=list)
    buttons: list[str] = field(default_factory=list)
    button_labels: list[str] = field(default_factory=list)  # from a `.buttons` sidecar
    # Buttons with their labels (label, payload), for channels that show our
    # own keyboard (Telegram's inline keyboard) rather than an approved one.
    keyboard: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class WhatsAppTemplateSpec:
    name: str
    meta_name: str
    language: str
    params: list[str]
    buttons: list[str]


def templates_dir() -> Path:
    configured = get_settings().TEMPLATES_DIR
    return Path(configured) if configured else DEFAULT_DIR


@functools.lru_cache(maxsize=4)
def _environment(root: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(root),
        autoescape=lambda name: bool(name and name.endswith(".html")),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        auto_reload=True,
    )


def _env() -> SandboxedEnvironment:
    return _environment(str(templates_dir()))


@functools.lru_cache(maxsize=4)
def _whatsapp_specs(root: str) -> dict[str, WhatsAppTemplateSpec]:
    path = Path(root) / "whatsapp" / "templates.json"
    if not path.exists():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: WhatsAppTemplateSpec(
            name=name,
            meta_name=str(spec.get("meta_name") or name),
            language=str(spec.get("language") or "pt_BR"),
            params=[str(p) for p in spec.get("params") or []],
            buttons=[str(b) for b in spec.get("buttons") or []],
        )
        for name, spec in doc.items()
        if not name.startswith("_")
    }


def whatsapp_template(name: str) -> WhatsAppTemplateSpec:
    specs = _whatsapp_specs(str(templates_dir()))
    if name not in specs:
        raise UnknownTemplate(f"no approved WhatsApp template {name!r}", "template")
    return specs[name]


# Which template variable completes each payload prefix (the id acted on).
BUTTON_SUBJECT = {
    "CONFIRM_": "appointment_id",
    "RESCHEDULE_": "appointment_id",
    "CANCEL_": "appointment_id",
    "CLAIM_": "offer_id",
}
BUTTON_LABEL_MAX = 20  # WhatsApp's limit for a quick-reply title


@functools.lru_cache(maxsize=64)
def _buttons_file(path: str, mtime: float) -> tuple[tuple[str, str], ...]:
    buttons: list[tuple[str, str]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        label, sep, prefix = (part.strip() for part in line.partition("|"))
        if not sep or not label or not prefix or len(label) > BUTTON_LABEL_MAX:
            raise TemplateError(f"{path}: a line must be `Label|PAYLOAD_PREFIX`", "template")
        buttons.append((label, prefix))
    return tuple(buttons)


def template_buttons(channel: str, template: str) -> list[tuple[str, str]]:
    """The quick-reply buttons template `template` declares for `channel` in
    its `<template>.buttons` sidecar: [(label, payload_prefix)], [] if none."""
    if channel not in CHANNELS or not template or "/" in template or template.startswith("."):
        return []
    path = templates_dir() / channel / f"{template}.buttons"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return []
    return list(_buttons_file(str(path), mtime))


def button_payloads(channel: str, template: str, data: dict[str, Any]) -> list[str] | None:
    """The payloads of the sidecar's buttons for this data (None: no sidecar)."""
    buttons = template_buttons(channel, template)
    if not buttons:
        return None
    payloads = []
    for _, prefix in buttons:
        key = BUTTON_SUBJECT.get(prefix, "appointment_id")
        if not data.get(key):
            raise TemplateDataError(f"button {prefix} needs {key}", f"data.{key}")
        payloads.append(f"{prefix}{data[key]}")
    return payloads


def _keyboard(channel: str, name: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    """The template's buttons with their payloads: each acts on the message's
    appointment (`data.appointment_id`), so a template sent about no
    appointment shows none."""
    appointment = data.get("appointment_id")
    if not appointment:
        return []
    return [(label, f"{prefix}{appointment}") for label, prefix in template_buttons(channel, name)]


def available_templates(channel: str) -> list[str]:
    root = templates_dir() / channel
    if not root.is_dir():
        return []
    names = {p.name.split(".", 1)[0] for p in root.iterdir() if p.suffix in (".txt", ".html")}
    return sorted(names)


def _required_variables(path: str) -> set[str]:
    env = _env()
    assert env.loader is not None
    source, _, _ = env.loader.get_source(env, path)
    return meta.find_undeclared_variables(env.parse(source))


# Variables a template may use that a caller need not give (their default):
# `link`, the appointment's self-service page, which the scheduler fills in
# and an API caller sending the same template may leave out.
OPTIONAL_VARIABLES: dict[str, Any] = {"link": ""}


def _render(path: str, data: dict[str, Any]) -> str:
    env = _env()
    data = {**OPTIONAL_VARIABLES, **data}
    missing = sorted(_required_variables(path) - data.keys())
    if missing:
        raise TemplateDataError(f"template {path} needs {', '.join(missing)}", f"data.{missing[0]}")
    try:
        return env.get_template(path).render(**data).strip()
    except UndefinedError as exc:
        raise TemplateDataError(f"template {path}: {exc.message}", "data") from None


def _render_string(source: str, data: dict[str, Any]) -> str:
    try:
        return _env().from_string(source).render(**data)
    except UndefinedError as exc:
        raise TemplateDataError(f"button payload: {exc.message}", "data") from None


def render(channel: str, name: str, data: dict[str, Any]) -> Rendered:
    """Render template `name` for `channel` with `data` (raises TemplateError)."""
    if channel not in CHANNELS:
        raise UnknownTemplate(f"no templates for channel {channel!r}", "channel")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UnknownTemplate(f"unknown template {name!r}", "template")
    if not isinstance(data, dict):
        raise TemplateDataError("data must be an object", "data")
    try:
        if channel == "email":
            subject = (
                _render(f"email/{name}.subject.txt", data).replace("\r", " ").replace("\n", " ")
            )
            text = _render(f"email/{name}.txt", data)
            html = _render(f"email/{name}.html", data)
            return Rendered(text=text, subject=subject, html=html)
        text = _render(f"{channel}/{name}.txt", data)
    except TemplateNotFound:
        known = ", ".join(available_templates(channel)) or "none"
        raise UnknownTemplate(
            f"unknown {channel} template {name!r} (known: {known})", "template"
        ) from None
    if channel == "telegram":
        return Rendered(text=text, keyboard=_keyboard(channel, name, data))
    if channel != "whatsapp":
        return Rendered(text=text)
    try:
        spec = whatsapp_template(name)
    except UnknownTemplate:
        return Rendered(text=text)  # free-form only: usable inside the 24-hour window
    missing = [p for p in spec.params if p not in data]
    if missing:
        raise TemplateDataError(
            f"WhatsApp template {name} needs {', '.join(missing)}", f"data.{missing[0]}"
        )
    sidecar = button_payloads(channel, name, data)
    return Rendered(
        text=text,
        params=[str(data[p]) for p in spec.params],
        buttons=sidecar if sidecar is not None else [_render_string(b, data) for b in spec.buttons],
        button_labels=[label for label, _ in template_buttons(channel, name)] if sidecar else [],
    )
