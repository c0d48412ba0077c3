# binsight real-time endpoint, SageMaker hosting contract:
#   docker build -t binsight-serve .
#   docker run --rm -p 8080:8080 -v "$PWD/runs/train/exp/artifact:/opt/ml/model:ro" binsight-serve serve
#   curl localhost:8080/ping
# SageMaker runs `docker run IMAGE serve` with the unpacked model.tar.gz in /opt/ml/model.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BINSIGHT_NO_PROGRESS=1

WORKDIR /opt/binsight
# CPU-only torch wheels: the CUDA ones are several GB and hosting here is CPU inference.
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.14.1" "torchvision==0.29.1" \
 && pip install ".[serve]"

COPY docker/serve /usr/local/bin/serve
RUN chmod 755 /usr/local/bin/serve && mkdir -p /opt/ml/model

EXPOSE 8080
# SageMaker passes "serve" as the command; plain `docker run IMAGE` does the same.
CMD ["serve"]
