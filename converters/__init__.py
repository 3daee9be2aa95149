"""Workstation side of yolo_tpu: darknet cfg/weights -> Keras -> int8 TFLite -> Edge TPU check.

Needs TensorFlow (the `convert` extra); may import `yolo_tpu`, never the reverse.
"""
import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the converter's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
