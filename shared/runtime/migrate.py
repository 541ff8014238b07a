"""Apply Alembic migrations programmatically (`python -m shared.runtime.migrate`)."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[2]  # the repository root


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    command.upgrade(alembic_config(url), revision)


def main() -> None:
    from shared.core.config import ConfigError, fail_startup, get_settings

    settings = get_settings()
    if not settings.DATABASE_URL:
        fail_startup(ConfigError("DATABASE_URL not set"))
    upgrade(settings.DATABASE_URL, sys.argv[1] if len(sys.argv) > 1 else "heads")


if __name__ == "__main__":
    main()
