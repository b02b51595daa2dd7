# A GPU worker image: CUDA torch, DeepSpeed (ops built at run time on the GPU node), this package.
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/alignment
COPY . .
RUN python3.11 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir torch==2.13.0 \
    && DS_BUILD_OPS=0 /opt/venv/bin/pip install --no-cache-dir --no-build-isolation -c constraints.txt deepspeed \
    && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt -e ".[s3]"
ENV PATH=/opt/venv/bin:$PATH
