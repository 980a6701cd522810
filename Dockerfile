# One image for the prediction API (default command) and the retraining scheduler:
#   docker build -t crypto-forecast .
#   docker run -p 8000:8000 crypto-forecast                         # API
#   docker run crypto-forecast python retrain_scheduler.py          # scheduler (metrics on :9100)
# Every runtime dependency ships as a manylinux wheel, so neither stage needs a compiler.
#
# Build arguments:
#   BASE_IMAGE  any Debian-based image with python3 (3.11) and its venv module; both stages use
#               it. Without Docker Hub: scripts/build-base-image.sh builds one locally
#               (crypto-forecast-base:bookworm) with debootstrap.
#   PIP_CERT    a CA bundle path inside the base image for pip (e.g. behind a TLS-inspecting
#               proxy); empty = pip's default trust store.

ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# --- builder: the virtualenv with the pinned requirements ------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG PIP_CERT=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python3 -m venv /opt/venv
# Only the requirements first: this layer is rebuilt when they change, not when the code does.
COPY requirements.txt /tmp/requirements.txt
RUN if [ -z "${PIP_CERT}" ]; then unset PIP_CERT; fi \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

# --- runtime: the venv, the code and an unprivileged user -------------------------------------
FROM ${BASE_IMAGE} AS runtime

# HOME and TMPDIR must be writable by the app user: Prophet (cmdstanpy) writes its fit files to
# the temp dir and fails with a confusing "stan_backend" error when it cannot; matplotlib keeps
# its cache under MPLCONFIGDIR.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/app \
    TMPDIR=/home/app/tmp \
    MPLCONFIGDIR=/home/app/.cache/matplotlib \
    LOG_FORMAT=json \
    DATA_DIR=/app/data \
    MODELS_DIR=/app/models \
    REPORTS_DIR=/app/reports \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    SCHEDULER_METRICS_PORT=9100

RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --create-home --home-dir /home/app \
        --shell /usr/sbin/nologin app \
    && mkdir -p /home/app/tmp /home/app/.cache/matplotlib /app/data /app/models /app/reports \
    && chown -R app:app /home/app /app/data /app/models /app/reports

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root (read-only for the app user); only data/, models/ and reports/
# are writable. Named volumes mounted there start with this ownership.
COPY pipeline/ ./pipeline/
# The scripts, and the gate thresholds compare_models.py reads by default.
COPY *.py quality_gate.json ./

# Numeric, so Kubernetes runAsNonRoot can verify it (10001 is the app user created above).
USER 10001:10001

VOLUME ["/app/data", "/app/models"]
EXPOSE 8000 9100

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

CMD ["python", "api_service.py", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
