"""The forms darknet's leaky ReLU can take in the Keras graph, and the default.

A table of its own, free of TensorFlow, so the command lines parse arguments without loading it
and keras_model (which builds the forms) and darknet (which picks one) both read it from here.
"""
from __future__ import annotations

LEAKY_POLICIES = ("auto", "addrelu", "prelu", "maximum", "keep", "relu")
# Every policy but relu computes darknet's leaky exactly.
EXACT_LEAKY = ("maximum", "addrelu", "prelu", "keep")
# auto: the exact Edge TPU forms, in order of preference. The int8 conversion keeps the
# first unless a later one keeps more of the float model's detections on the user's own
# images (converters.leaky_choice). addrelu first: XNNPACK accelerates it on a CPU, not PRELU.
AUTO_FORMS = ("addrelu", "prelu")
DEFAULT_LEAKY = "auto"
LEAKY_HELP = ("how leaky ReLU is expressed: auto (addrelu, or prelu when its int8 "
              "model keeps more of the float model's detections on your images), addrelu "
              "(exact, Edge TPU: 0.1x + relu(0.9x)), prelu (exact, Edge TPU, slow on CPU), "
              "maximum (exact, Edge TPU: MUL+MAXIMUM, loses detections in int8), keep "
              "(LEAKY_RELU, CPU only), relu (Edge TPU; right only for weights trained with ReLU)")


def keras_form(leaky: str) -> str:
    """The form a Keras model is built with: auto starts as its first form (a float or
    Keras-only conversion has nothing to choose by)."""
    return AUTO_FORMS[0] if leaky == "auto" else leaky
