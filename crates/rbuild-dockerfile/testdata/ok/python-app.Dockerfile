ARG PYTHON=3.12
FROM python:${PYTHON}-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip,id=pip-${PYTHON} \
    python -m venv /venv && /venv/bin/pip install -r requirements.txt

FROM python:${PYTHON}-slim
ARG PYTHON
LABEL org.opencontainers.image.title="app" python.version=$PYTHON
COPY --from=builder /venv /venv
COPY --chown=1000:1000 src/ /app/src/
ENV PATH="/venv/bin:$PATH"
USER 1000
STOPSIGNAL SIGINT
CMD ["python", "-m", "app"]
