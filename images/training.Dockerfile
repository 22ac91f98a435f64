# GPU training image: CUDA builds of TensorFlow and torch, and the falkon
# package from its own wheel index. The NVIDIA container runtime of the GPU
# node provides the driver; the CUDA libraries come with the wheels.
# Build from the repository root:
#   docker build -f images/training.Dockerfile -t l1recal-training:0.1.0 .

FROM python:3.11.7-slim-bookworm AS build

# CUDA flavour of the torch wheel index and the matching falkon wheel page.
# NOTE: falkon publishes one page per torch and CUDA release
# (https://falkon.dibris.unige.it/index.html); when none exists yet for the
# pinned torch, this step fails and FALKON_INDEX must name a page that does.
ARG TORCH_CUDA=cu128
ARG FALKON_VERSION=0.9.0
ARG FALKON_INDEX=https://falkon.dibris.unige.it/torch-2.13.0_cu128.html
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
# torch==2.13.0 from the CUDA index resolves to its +cu build; the CUDA
# runtime libraries of TensorFlow come with its and-cuda extra.
RUN pip install --constraint constraints.txt \
        --extra-index-url "https://download.pytorch.org/whl/${TORCH_CUDA}" \
        ".[s3]" "tensorflow[and-cuda]==2.21.0" \
    && pip install --constraint constraints.txt --find-links "${FALKON_INDEX}" \
        "falkon==${FALKON_VERSION}"

FROM python:3.11.7-slim-bookworm

COPY --from=build /opt/venv /opt/venv
COPY params.yaml /opt/l1recal/params.yaml

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/l1recal l1recal
USER 10001:10001
WORKDIR /home/l1recal

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

ENTRYPOINT ["l1recal"]
CMD ["--help"]
