# CPU image of the pipeline's data, evaluation, approval and roll-out steps:
# the l1recal package with CPU builds of TensorFlow and torch, DVC with its
# S3 remote, and git. Build from the repository root:
#   docker build -f images/cpu.Dockerfile -t l1recal-cpu:0.1.0 .
# DVC remote credentials are never baked in: the pipeline passes them as
# environment variables from the Kubernetes Secret l1recal-dvc-remote.

FROM python:3.11.7-slim-bookworm AS build

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The lock file first, so the dependency layer is rebuilt only when it changes.
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
# constraints.txt pins every package; torch comes from the CPU wheel index,
# whose 2.13.0+cpu build satisfies the torch==2.13.0 pin.
RUN pip install --constraint constraints.txt --extra-index-url "${TORCH_INDEX}" ".[s3]"

FROM python:3.11.7-slim-bookworm

RUN apt-get update \
    && apt-get install --yes --no-install-recommends \
        git=1:2.39.5-0+deb12u3 \
        ca-certificates=20250419~deb12u2 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
COPY params.yaml /opt/l1recal/params.yaml

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/l1recal l1recal
USER 10001:10001
WORKDIR /home/l1recal

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DVC_NO_ANALYTICS=1 \
    TF_CPP_MIN_LOG_LEVEL=2

ENTRYPOINT ["l1recal"]
CMD ["--help"]
