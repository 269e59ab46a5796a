# dlx in a container: `docker build -t dlx . && docker run --rm -v "$PWD:/work" dlx train specs/digits_cnn.yaml`
# For GPUs, build on a CUDA-capable host with `--build-arg DLX_EXTRAS=gpu` and run with `--gpus all`.
FROM python:3.11-slim

ARG DLX_EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 dlx

WORKDIR /opt/dlx
COPY pyproject.toml README.md ./
COPY dlx ./dlx
COPY examples/tfrecord ./examples/tfrecord
RUN pip install ".${DLX_EXTRAS:+[$DLX_EXTRAS]}"

USER dlx
WORKDIR /work
ENTRYPOINT ["dlx"]
CMD ["--help"]
