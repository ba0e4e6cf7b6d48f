# A reproducible environment: `docker build -t slam . && docker run --rm slam make test`
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make libgl1 libgomp1 libusb-1.0-0 \
    libvulkan1 mesa-vulkan-drivers xvfb xdotool \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /slam
COPY . .
RUN make venv
CMD ["make", "demo"]
