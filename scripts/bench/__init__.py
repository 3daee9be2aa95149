"""scripts/benchmark.py by contestant: one module per contestant (tflite, darknet,
opencv, ceiling), what they share (common) and the worker process (worker)."""
