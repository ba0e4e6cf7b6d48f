# A reproducible environment: `docker build -t slam . && docker run --rm slam` runs the demo (`make demo`;
# add `-v "$PWD/runs:/slam/runs"` to keep its runs/demo); `docker run --rm slam make test` runs the tests.
# Without a Docker daemon, tests/integration/test_dockerfile.py runs these steps in a fresh copy.
# Python 3.11 because constraints.txt (the exact versions `make venv` installs) is locked for it.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make libgl1 libgomp1 libusb-1.0-0 \
    libvulkan1 mesa-vulkan-drivers xvfb xdotool \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /slam
# .dockerignore keeps the host's .venv, runs and caches out of the image
COPY . .
# the Makefile installs with `pip install -c constraints.txt`
RUN make venv
CMD ["make", "demo"]
