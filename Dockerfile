# syntax=docker/dockerfile:1
#
# iot-bridge container image.
#
#   docker build -t iot-bridge .
#   docker run -p 8080:8080 -v bridge-data:/data -e BRIDGE_API_TOKEN=... -e MQTT_BROKER=mosquitto iot-bridge
#
# Or the whole stack (bridge + mosquitto): deploy/docker-compose.yml.
# scripts/container-test builds it and runs the stack (docs/DEVELOPMENT.md).

# --- builder: the project and its dependencies in a virtualenv -----------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
# Only what the build needs (.dockerignore keeps the rest out of the context);
# README.md is the package's long description, so setuptools reads it.
COPY pyproject.toml README.md ./
COPY src/ src/
# Every wheel lands in /wheels first, so whatever a dependency would need to
# build from source stays in this stage. The virtualenv then gets them with
# --no-index (nothing more is fetched) and loses pip and setuptools: the
# runtime stage copies a venv that only runs. Its .pyc are compiled here, once,
# but for pygments (rich's syntax highlighter, 4.5 MB of .pyc, never imported
# by the service).
RUN python -m venv /opt/iot-bridge \
    && /opt/iot-bridge/bin/python -m pip wheel --wheel-dir /wheels . \
    && /opt/iot-bridge/bin/python -m pip install --no-compile --no-index --find-links=/wheels \
       /wheels/iot_bridge-*.whl \
    && /opt/iot-bridge/bin/python -m pip uninstall --yes pip setuptools \
    && /opt/iot-bridge/bin/python -m compileall -q -j 0 -x /pygments/ /opt/iot-bridge/lib \
    && rm -f /opt/iot-bridge/bin/activate* /opt/iot-bridge/bin/Activate.ps1

# --- runtime -------------------------------------------------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="iot-bridge" \
      org.opencontainers.image.description="Smart-plug power readings in, machine-usage sessions out to Odoo." \
      org.opencontainers.image.licenses="MIT"

# The venv's python links to this stage's python, the same as the builder's.
COPY --from=builder /opt/iot-bridge /opt/iot-bridge

ENV PATH=/opt/iot-bridge/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

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
