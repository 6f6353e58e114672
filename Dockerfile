# One image for the gateway and the dialogue worker; the compose file picks the command:
#   python -m gateway   |   python -m dialogue_worker
# Build: docker build -t dialogue-platform:0.1.0 .

# --- dependencies, installed into a venv that the runtime stage copies ---------------
FROM python:3.11.11-slim-bookworm AS deps

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /build
# The runtime dependencies exactly as requirements.lock pins them (make lock writes it
# from pyproject.toml), so this layer is rebuilt when they change, not when code does.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock

# --- runtime -----------------------------------------------------------------------
FROM python:3.11.11-slim-bookworm

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/tmp/dialogue-worker

RUN groupadd --system --gid 10001 dialogue \
    && useradd --system --uid 10001 --gid dialogue --no-create-home --shell /usr/sbin/nologin dialogue

COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# The code runs from /app (python -m <package>), so data files such as
# gateway/openapi.json and contracts/schema/ ship next to their modules.
COPY contracts/ contracts/
COPY discovery/ discovery/
COPY dialogue_worker/ dialogue_worker/
COPY gateway/ gateway/
COPY platform_common/ platform_common/
# COPY keeps the modes the files have in the build context, which follow the build
# host's umask: under 027 they would not be readable by the user below. Root keeps
# ownership (the services cannot change their own code); everyone may read.
RUN chmod -R u=rwX,go=rX /app

USER 10001:10001
# 8007: gateway (published); 8100: worker's internal API (never published).
EXPOSE 8007 8100
CMD ["python", "-m", "gateway"]
