# syntax=docker/dockerfile:1
# The game's own SageMaker image: `train` (training jobs), `evaluate` and `resolve-dataset` (the
# pipeline's processing jobs) and `serve` (batch transform), all `python -m pipelines COMMAND`
# (pipelines/container.py). `cdk deploy` builds it (stacks/ml.py, a DockerImageAsset) from a context
# the stack stages at synth: this file, requirements/image.txt, the core wheel and pipelines/*.py.
# By hand, from the repository root after `make synth` (which builds the wheel into dist/):
#   docker build --platform linux/amd64 --build-arg CORE_WHEEL=dist/player_ltv-0.1.0-py3-none-any.whl -t ltv .

# python:3.11-slim-bookworm (Python 3.11, Debian 12), pinned by digest
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ARG CORE_WHEEL
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    AUTOGLUON_TELEMETRY=0 \
    PYTHONPATH=/opt/program \
    LTV_SERVE_USER=ltv

# LightGBM's wheel needs the OpenMP runtime, which the slim base leaves out. Pinned to Debian 12's
# GCC 12.2.0-14 with any `+deb12uN` suffix: a point release replaces the exact version in the archive
# (the old one stops resolving), while the base image's digest already fixes the distribution.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'libgomp1=12.2.0-14*' \
    && rm -rf /var/lib/apt/lists/*

# the locked dependencies (every file hashed, wheels only), then the core itself without dependencies
COPY requirements/image.txt /tmp/requirements.txt
RUN python -m pip install --require-hashes --only-binary=:all: -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY ${CORE_WHEEL} /tmp/wheel/
RUN python -m pip install --no-deps --no-index /tmp/wheel/*.whl \
    && rm -rf /tmp/wheel \
    && python -m pip check

# SageMaker starts containers as root and mounts /opt/ml/{model,output,processing/*} owned by root,
# so training and processing jobs run as root; `serve` drops its request-handling workers to this
# unprivileged user (gunicorn user/group, see pipelines/serve.py).
RUN useradd --system --user-group --no-create-home --shell /usr/sbin/nologin ltv

COPY pipelines/ /opt/program/pipelines/
WORKDIR /opt/program
EXPOSE 8080
ENTRYPOINT ["python", "-m", "pipelines"]
