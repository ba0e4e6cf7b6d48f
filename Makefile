# Everything a newcomer needs: `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-deps test bench demo clean

# Debian packages the viewer needs: Open3D's own libraries (libgl1 libgomp1 libusb-1.0-0), Mesa's
# software Vulkan for rendering without a GPU or display (libvulkan1 mesa-vulkan-drivers: `slam view
# --screenshot`), a virtual screen and a key-presser for the live-window test (xvfb xdotool).
# Installed only when missing (one dpkg query each); elsewhere than Debian/Ubuntu as root, a warning.
SYSTEM_PKGS := libgl1 libgomp1 libusb-1.0-0 libvulkan1 mesa-vulkan-drivers xvfb xdotool

system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "warning: system packages missing:$$missing (apt-get install them; the viewer and its tests need them)"; fi; \
	fi

# Recreate the venv only when it is missing or pyproject.toml changed since it was built.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: system-deps $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python scripts/bench_solvers.py --out bench_out
	$(BIN)/python scripts/bench_odometry.py --accuracy --out bench_out/odometry

demo: venv
	$(BIN)/python -m slam demo

clean:
	rm -rf $(VENV) bench_out runs .pytest_cache
