# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-convert-test
MODEL  := build/yolov3-tiny_int8.tflite

.PHONY: demo test venv clean

# One environment with the runtime, the converter (TensorFlow) and the test tools; the
# runtime alone installs with `pip install .` and never pulls TensorFlow.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[convert,test]'
	touch $(STAMP)

venv: $(STAMP)

build/yolov3-tiny.keras: $(STAMP) cfg/yolov3-tiny.cfg weights/yolov3-tiny.weights
	$(PY) -m converters.darknet cfg/yolov3-tiny.cfg weights/yolov3-tiny.weights \
		--names cfg/coco.names --leaky maximum -o $@

demo: build/yolov3-tiny.keras

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf build out
