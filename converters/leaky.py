"""The forms darknet's leaky ReLU can take in the Keras graph, and the default.

A table of its own, free of TensorFlow, so the command lines parse arguments without loading it
and keras_model (which builds the forms) and darknet (which picks one) both read it from here.
"""
from __future__ import annotations

LEAKY_POLICIES = ("relu", "maximum", "addrelu", "prelu", "keep")
# Every policy but relu computes darknet's leaky exactly; addrelu is also all Edge TPU ops
# and keeps darknet's detections in int8, so it is what a leaky cfg gets by default.
EXACT_LEAKY = ("maximum", "addrelu", "prelu", "keep")
DEFAULT_LEAKY = "addrelu"
LEAKY_HELP = ("how leaky ReLU is expressed: addrelu (default; exact, Edge TPU: "
              "0.1x + relu(0.9x), keeps darknet's detections in int8), maximum (exact, Edge "
              "TPU: MUL+MAXIMUM, loses some detections in int8), prelu (exact, Edge TPU, slow "
              "on CPU), keep (LEAKY_RELU, CPU only), relu (Edge TPU; right only for weights "
              "trained with ReLU)")
