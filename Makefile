# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-convert-test
MODEL  := build/yolov3-tiny_int8.tflite

# AlexeyAB's darknet, built from the source in ../shared/reference: the tests' reference for
# the YOLOv4-era cfgs (Debian's darknet package is the one for the YOLOv3 family).
ALEXEYAB_SRC ?= ../shared/reference/darknet-alexeyab-59596d78.tar.gz
ALEXEYAB     := build/darknet-alexeyab/libdarknet.so

.PHONY: demo test venv clean alexeyab

# One environment with the runtime, the converter (TensorFlow) and the test tools; the
# runtime alone installs with `pip install .` and never pulls TensorFlow.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[convert,test]'
	# norfair (a peer in scripts/benchmark_tracking.py) pins rich<13, trackers needs >=13:
	# norfair only prints with rich, so it goes in without its pins
	$(PY) -m pip install --quiet filterpy && $(PY) -m pip install --quiet --no-deps 'norfair>=2.1'
	touch $(STAMP)

venv: $(STAMP)

# The bundled weights were trained with leaky ReLU; the converter's default --leaky auto
# (addrelu: 0.1x + relu(0.9x), exact, every op on the Edge TPU; prelu where that keeps more)
# keeps darknet's detections in int8.
$(MODEL): $(STAMP) cfg/yolov3-tiny.cfg cfg/coco.names weights/yolov3-tiny.weights
	$(PY) -m converters cfg/yolov3-tiny.cfg weights/yolov3-tiny.weights \
		--names cfg/coco.names --out-dir build

demo: $(MODEL)
	$(PY) -m yolo_tpu.detect --model $(MODEL) --image samples/ --save out/ \
		--json out/detections.jsonl
	@echo "annotated photos and detections.jsonl are in out/"

$(ALEXEYAB): $(ALEXEYAB_SRC)
	mkdir -p build
	tar xzf $(ALEXEYAB_SRC) -C build/
	$(MAKE) -C build/darknet-alexeyab -j2 LIBSO=1 >build/darknet-alexeyab.log 2>&1 \
		|| (tail -20 build/darknet-alexeyab.log; exit 1)
	touch $@

alexeyab: $(ALEXEYAB)

# Without the source (a clone without ../shared) its tests skip and say why; CI has it.
test: $(STAMP) $(if $(wildcard $(ALEXEYAB_SRC)),$(ALEXEYAB))
	$(PY) -m pytest

clean:
	rm -rf build out
