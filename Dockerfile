# edgeopt on NVIDIA's TensorRT image (TensorRT + CUDA + cuDNN preinstalled).
# Build:  docker build -t edgeopt .
# Run:    docker run --gpus all --rm -v "$PWD:/work" -w /work edgeopt build-engine model.onnx --fp16 --out model.engine
FROM nvcr.io/nvidia/tensorrt:25.08-py3

WORKDIR /opt/edgeopt
COPY pyproject.toml README.md ./
COPY edgeopt ./edgeopt
# The base image already ships TensorRT's Python bindings (device memory goes through torch).
# DL3013 asks to pin versions: this installs the project itself, whose pyproject.toml pins the ranges
# hadolint ignore=DL3013
RUN python3 -m pip install --no-cache-dir ".[tensorrt]"

ENTRYPOINT ["edgeopt"]
CMD ["--help"]
