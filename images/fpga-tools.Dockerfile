# FPGA-tools image: hls4ml with g++ for the bit-accurate C simulation, and
# the mount point of the vendor HLS tools. The vendor tools (Vitis HLS or
# Vivado HLS) are licensed and large, so they are mounted from the PVC
# l1recal-fpga-tools at /opt/xilinx by the pipeline, never baked in.
# Build from the repository root:
#   docker build -f images/fpga-tools.Dockerfile -t l1recal-fpga-tools:0.1.0 .

FROM python:3.11.7-slim-bookworm AS build

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN pip install --constraint constraints.txt --extra-index-url "${TORCH_INDEX}" .

FROM python:3.11.7-slim-bookworm

# g++ and make compile the hls4ml emulation library for C simulation.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends \
        g++=4:12.2.0-3 \
        make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*

COPY --from=build /opt/venv /opt/venv
COPY params.yaml /opt/l1recal/params.yaml

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/l1recal l1recal \
    && mkdir -p /opt/xilinx \
    && chown 10001:10001 /opt/xilinx
USER 10001:10001
WORKDIR /home/l1recal

# bin/ under the mount holds vitis-run or vivado_hls (the pipeline sets the
# same PATH on the synthesis task).
ENV PATH=/opt/xilinx/bin:/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2

ENTRYPOINT ["l1recal"]
CMD ["hls", "--help"]
