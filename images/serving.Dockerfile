# Serving image: the BentoML service of serving/service.py with the l1recal
# package. Models are not in the image: the Deployment's init container
# imports the .bentomodel files of the model store into BENTOML_HOME.
# Build from the repository root:
#   docker build -f images/serving.Dockerfile -t l1recal-serving:0.1.0 .

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

COPY --from=build /opt/venv /opt/venv
COPY params.yaml /opt/l1recal/params.yaml
COPY serving /opt/l1recal/serving

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/l1recal l1recal
USER 10001:10001
WORKDIR /opt/l1recal

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BENTOML_HOME=/var/lib/bentoml \
    BENTOML_DO_NOT_TRACK=true \
    L1RECAL_PARAMS=/opt/l1recal/params.yaml

EXPOSE 3000
# /livez and /readyz are BentoML's health endpoints; the Kubernetes probes use them.
ENTRYPOINT ["bentoml", "serve", "serving.service:L1Recal", "--host", "0.0.0.0", "--port", "3000"]
