# One image for the API, the workers, beat and the migrate job.
#   CPU (default):  docker build -t rcs .
#   CUDA:           docker build --build-arg TORCH_VARIANT=cu128 -t rcs:cuda .
# The CUDA wheels carry their own CUDA runtime; the host needs the NVIDIA driver and the
# NVIDIA container toolkit. Models are mounted at /models, never downloaded at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RCS_DATA_DIR=/data \
    RCS_LOG_FORMAT=json

RUN useradd --create-home --uid 10001 rcs && mkdir -p /data /models && chown rcs /data
WORKDIR /app

# torch first, from the variant's index, so `pip install .` finds it satisfied.
RUN pip install --index-url "${TORCH_INDEX}/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md alembic.ini cli.py ./
COPY api ./api
COPY core ./core
COPY db ./db
COPY workers ./workers
COPY migrations ./migrations
RUN pip install . && python -c "import api.app, workers.celery_app"

USER rcs
EXPOSE 8000 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["rcs", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-with-worker"]
