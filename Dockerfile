# One image for the API, the migrations and the workers of docker-compose.yml.
# CPU torch by default; the GPU worker builds with a CUDA wheel index:
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/hf

RUN useradd --create-home --uid 1000 swi && mkdir -p /data/hf && chown swi /data/hf
WORKDIR /app

# torch first, from the chosen index: an unpinned install would pull another build
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

COPY pyproject.toml README.md ./
COPY requirements requirements
COPY contracts contracts
COPY indexer indexer
COPY catalog catalog
COPY api api
COPY workers workers
COPY swi swi
COPY migrations migrations
# the runtime dependencies at the versions of the lock (the dev tools in it are not installed)
RUN pip install --constraint requirements/lock.txt '.[server]'

USER swi
EXPOSE 8000
CMD ["uvicorn", "--factory", "api.serve:create_served_app", "--host", "0.0.0.0", "--port", "8000"]
