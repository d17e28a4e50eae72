# syntax=docker/dockerfile:1
#
# iot-bridge container image.
#
#   docker build -t iot-bridge .
#   docker run -p 8080:8080 -v bridge-data:/data -e MQTT_BROKER=mosquitto iot-bridge
#
# Or the whole stack (bridge + mosquitto): deploy/docker-compose.yml.

# --- builder: the project wheel and the wheels of its dependencies -------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
# Only what the build needs (.dockerignore keeps the rest out of the context);
# README.md is the package's long description, so setuptools reads it.
COPY pyproject.toml README.md ./
COPY src/ src/
# Every wheel lands in /wheels, so the final stage installs offline and needs
# no compiler, whatever a dependency would need to build from source.
RUN python -m pip wheel --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="iot-bridge" \
      org.opencontainers.image.description="Smart-plug power readings in, machine-usage sessions out to Odoo." \
      org.opencontainers.image.licenses="MIT"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# The wheels are bind-mounted from the builder, not copied: they stay out of the image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels /wheels/iot_bridge-*.whl

# A fixed, unprivileged uid/gid so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin bridge \
    && mkdir -p /data \
    && chown bridge:bridge /data \
    && chmod 0700 /data

# The outbox (SQLite), the detector state and config-active.yaml live here: a
# volume, so a new container carries on where the old one stopped.
VOLUME ["/data"]
WORKDIR /data

ENV BRIDGE_DATA_DIR=/data \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_PORT=8080 \
    LOG_FORMAT=json \
    LOG_LEVEL=INFO

EXPOSE 8080

# The 'bridge' user, by number so runtimes (Kubernetes runAsNonRoot) can tell it is not root.
USER 10001:10001

# slim has no curl; /health answers 200 while the process runs ("degraded"
# included: restarting the container would not bring a broker back).
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('BRIDGE_PORT', '8080'), timeout=5)"]

# Exec form: iot-bridge is PID 1 and gets SIGTERM itself (it flushes and exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["iot-bridge"]
CMD ["run"]
