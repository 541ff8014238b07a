"""`python -m scheduler`"""

from __future__ import annotations

from shared.core.config import ConfigError, fail_startup, get_settings
from shared.core.logs import configure_logging


def main() -> None:
    try:
        settings = get_settings()
        settings.require_infrastructure()
    except ConfigError as exc:
        fail_startup(exc)
        return
    configure_logging(settings.LOG_LEVEL)
    from scheduler.service import run

    run(settings)


if __name__ == "__main__":
    main()
