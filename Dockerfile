# clinicq: one image for every process (ingest, workers, scheduler, flower,
# migrate); docker-compose.yml chooses the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies only (the project itself runs from /app via PYTHONPATH, so
# shared.runtime.migrate finds alembic.ini and migrations/ beside it). Installed
# first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p ingest workers scheduler shared \
    && touch ingest/__init__.py workers/__init__.py scheduler/__init__.py shared/__init__.py \
    && pip install . \
    && pip uninstall -y clinicq

COPY . .
RUN useradd --system --uid 10001 --home-dir /app clinicq \
    && chown -R clinicq /app

USER clinicq
EXPOSE 8000 5555
CMD ["gunicorn", "-c", "ingest/gunicorn_conf.py", "ingest.app:wsgi()"]
