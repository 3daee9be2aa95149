"""Any Keras model through `python -m converters.quantize`: the path for a model that is not a YOLO.

A `.keras`, `.h5` or SavedModel folder is loaded as is; its batch is fixed to 1 (the
Edge TPU maps no op with a dynamic size) and other unknown dimensions come from
`--input-shape`. int8 calibrates on `.npy`/`.npz` sample arrays (already in the model's
input form) or on images (resized to the input, then `--preprocess`), the ops the Edge
TPU would map are reported by `converters.edgetpu_check`, and `--eval-npz X.npz` (arrays
x, y) measures the int8 model against the float one: top-1 accuracy for a classifier,
output error otherwise. The chosen preprocessing and `--labels` are stored in the model
(yolo_tpu.classifier/1 metadata), so `python -m yolo_tpu.classify` needs only the file.
A yolo_tpu `.keras` from `converters.darknet` keeps the YOLO path (`dispatch`).
"""
from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from yolo_tpu.classifier import PREPROCESS, accept_negative_ranges, parse_preprocess, resize_pixels
from yolo_tpu.cli import preprocess_arg
from yolo_tpu.meta import METADATA_KEY, ClassifierMeta

ARRAY_EXTENSIONS = (".npy", ".npz")
KERAS_EXTENSIONS = (".keras", ".h5", ".hdf5")
GENERIC_FLAGS = ("input_shape", "preprocess", "eval_npz", "labels", "report_json")


class GenericError(ValueError):
    """A user mistake about a model, an array file or a flag: the message names it."""


# ---------------------------------------------------------------- the command-line hook

def shape_arg(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers such as 32,32,3")
    return dims


def add_args(ap: argparse.ArgumentParser) -> None:
    """The flags of the generic path, on converters.quantize's parser."""
    ap.set_defaults(io=None)  # int8 for a generic model, uint8 for a yolo_tpu one
    ap._option_string_actions["--io"].help = (
        "type of the int8 model's input and outputs (default: uint8 for a yolo_tpu model, "
        "int8 for any other)")
    ap._option_string_actions["--calib"].help += (
        "; for any other Keras model: images, or .npy/.npz arrays of samples as the model "
        "takes them")
    accept_negative_ranges(ap)
    g = ap.add_argument_group("any Keras model (not from converters.darknet)")
    g.add_argument("--input-shape", type=shape_arg, metavar="H,W,C",
                   help="the input's dimensions besides the batch (needed when unknown)")
    g.add_argument("--preprocess", type=preprocess_arg, metavar="|".join(PREPROCESS) + "|MEAN,STD",
                   help="how pixels 0..255 become the input, for calibration on images and "
                        "stored for yolo_tpu.classify (default with images: 0..1)")
    g.add_argument("--eval-npz", metavar="X.npz",
                   help="arrays x (samples) and y (labels): top-1 of float and int8 for a "
                        "classifier, output error otherwise")
    g.add_argument("--labels", metavar="FILE",
                   help="class names, one per line, stored in the model")
    g.add_argument("--report-json", metavar="FILE",
                   help="write the op count and the --eval-npz figures as JSON")


def is_yolo_tpu_keras(path: str) -> bool:
    """Whether `path` is a .keras written by converters.darknet (it holds yolo_tpu.json)."""
    from .keras_model import META_ENTRY
    try:
        with zipfile.ZipFile(path) as z:
            return META_ENTRY in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def dispatch(args: argparse.Namespace) -> int | None:
    """Run the generic path for a model that is not a yolo_tpu .keras (its exit status), or
    None to go on with the YOLO path (after refusing the generic-only flags)."""
    if is_yolo_tpu_keras(args.model):
        given = [f for f in GENERIC_FLAGS if getattr(args, f) is not None]
        if given:
            flag = "--" + given[0].replace("_", "-")
            _error(f"{flag} applies to Keras models not from converters.darknet; "
                   f"{args.model} is a yolo_tpu model")
            return 2
        return None
    try:
        return run(args)
    except GenericError as e:
        _error(str(e))
        return 2


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- loading and fixing

def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def load_any(path: str):
    """A Keras model from a .keras, .h5 or SavedModel folder; GenericError naming the file."""
    import keras
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise GenericError(f"{path}: a folder without saved_model.pb, not a SavedModel")
        return _saved_model(path)
    if not os.path.exists(path):
        raise GenericError(f"{path}: no such file or folder")
    if not path.lower().endswith(KERAS_EXTENSIONS):
        raise GenericError(f"{path}: not a Keras model (expected .keras, .h5 or a SavedModel "
                           "folder)")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # Keras raises anything from ValueError to OSError to KeyError
        raise GenericError(f"{path}: cannot load the Keras model ({_one_line(e)})") from None


def _saved_model(path: str):
    """A SavedModel's serving signature as a one-input Keras model (TFSMLayer)."""
    import keras
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(path)
        sig = loaded.signatures["serving_default"]
    except Exception as e:
        raise GenericError(f"{path}: cannot load the SavedModel ({_one_line(e)})") from None
    specs = list(sig.structured_input_signature[1].values())
    if len(specs) != 1:
        raise GenericError(f"{path}: the SavedModel takes {len(specs)} inputs; "
                           "converters.quantize takes models with one input")
    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    inp = keras.Input(shape=tuple(specs[0].shape[1:]), dtype=specs[0].dtype.name)
    out = layer(inp)
    if isinstance(out, dict):
        out = list(out.values())
        out = out[0] if len(out) == 1 else out
    return keras.Model(inp, out)


def fixed_batch(model, path: str, override: tuple[int, ...] | None):
    """The model rebuilt on an input of batch 1 (and `override` for its other dimensions):
    the Edge TPU compiler maps no op of a graph with dynamic sizes."""
    import keras
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        raise GenericError(f"{path}: the model takes {len(inputs)} inputs; converters.quantize "
                           "takes models with one input")
    shape = tuple(inputs[0].shape)
    dims = list(shape[1:])
    if override is not None:
        if len(override) != len(dims):
            raise GenericError(f"--input-shape {','.join(map(str, override))}: the model's input "
                               f"has {len(dims)} dimensions besides the batch {_shape(shape)}")
        clash = [(a, b) for a, b in zip(dims, override) if a is not None and a != b]
        if clash:
            raise GenericError(f"--input-shape {','.join(map(str, override))}: disagrees with "
                               f"{path}'s input {_shape(shape)}")
        dims = list(override)
    if None in dims:
        raise GenericError(f"{path}: input {_shape(shape)} has unknown dimensions besides the "
                           "batch; give them with --input-shape, e.g. --input-shape 32,32,3")
    inp = keras.Input(batch_shape=(1, *dims), dtype=inputs[0].dtype)
    return keras.Model(inp, model(inp)), tuple(int(d) for d in dims)


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


# ---------------------------------------------------------------- samples

def load_array(path: str, key: str = "x") -> np.ndarray:
    """The samples of a .npy, or array `key` of a .npz (or its only array)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GenericError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise GenericError(f"{path}: not a readable NumPy file ({_one_line(e)})") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            names = list(data.keys())
            if key in names:
                return _loaded(path, data, key)
            if len(names) == 1:
                return _loaded(path, data, names[0])
            raise GenericError(f"{path}: holds arrays {', '.join(names) or '(none)'}; "
                               f"name the samples {key!r}")
    return data


def _loaded(path: str, npz, key: str) -> np.ndarray:
    try:
        return npz[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GenericError(f"{path}: array {key!r} is unreadable ({_one_line(e)})") from None


def as_samples(path: str, arr: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """(N, *dims) float32 samples, or GenericError saying what is wrong with the array."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise GenericError(f"{path}: samples of type {arr.dtype}, not numbers")
    if tuple(arr.shape) == dims:
        arr = arr[None]
    if tuple(arr.shape[1:]) != dims:
        raise GenericError(f"{path}: samples of shape {tuple(arr.shape)}; the model takes "
                           f"(N, {', '.join(map(str, dims))})")
    if len(arr) == 0:
        raise GenericError(f"{path}: no samples in it")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise GenericError(f"{path}: samples hold NaN or infinite values")
    return arr


def image_samples(paths: list[str], dims: tuple[int, ...], norm: tuple[float, float]) -> np.ndarray:
    """Calibration images (files, folders, globs, videos) as the runtime feeds them."""
    from .calibration import CalibrationError, load_images
    if len(dims) != 3 or dims[2] not in (1, 3):
        raise GenericError(f"images cannot feed an input of shape {dims}; give samples as "
                           ".npy/.npz arrays with --calib")
    try:
        images = load_images(paths)
    except CalibrationError as e:
        raise GenericError(str(e)) from None
    mean, std = norm
    h, w, c = dims
    return np.stack([(resize_pixels(im, w, h, c).astype(np.float32) - mean) / std
                     for im in images])


def calibration_samples(calib: list[str] | None, dims: tuple[int, ...], num: int,
                        norm: tuple[float, float] | None, model: str) -> np.ndarray:
    """Up to `num` samples, spread over what --calib gives."""
    if not calib:
        raise GenericError(f"{model}: int8 needs calibration samples: --calib FILE.npy|.npz "
                           "(samples as the model takes them) or images (with --preprocess)")
    arrays = [p for p in calib if p.lower().endswith(ARRAY_EXTENSIONS)]
    if arrays and len(arrays) != len(calib):
        raise GenericError("--calib: give sample arrays (.npy/.npz) or images, not both")
    if arrays:
        samples = np.concatenate([as_samples(p, load_array(p), dims) for p in arrays])
    else:
        samples = image_samples(calib, dims, norm or PREPROCESS["0..1"])
    if len(samples) > num:
        samples = samples[np.linspace(0, len(samples) - 1, num).round().astype(int)]
    return samples


def feed(samples: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    def representative():
        for s in samples:
            yield [s[None]]
    return representative


# ---------------------------------------------------------------- evaluation

@dataclass(frozen=True)
class Evaluation:
    """The int8 (or other) model against the float one on --eval-npz."""
    samples: int
    float_top1: float | None = None  # classifier: top-1 accuracy against y
    quant_top1: float | None = None
    agreement: float | None = None   # classifier: share of samples with the same top-1
    max_error: float | None = None   # other: output error relative to the float range
    mean_error: float | None = None

    def describe(self, mode: str) -> str:
        if self.float_top1 is not None:
            return (f"eval: {self.samples} samples: top-1 float {self.float_top1:.4f}, {mode} "
                    f"{self.quant_top1:.4f} ({mode} agrees with float on "
                    f"{100 * self.agreement:.1f}%)")
        return (f"eval: {self.samples} samples: {mode} output error against float: mean "
                f"{self.mean_error:.4f}, max {self.max_error:.4f} (of the float output's range)")


def run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    """The converted model's first output on each sample, dequantized: (N, ...)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=data)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for s in x:
        value = s[None]
        if inp["dtype"] != np.float32:
            scale, zero_point = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
        it.set_tensor(inp["index"], value.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] != np.float32:
            scale, zero_point = out["quantization"]
            y = (y - zero_point) * scale
        results.append(y[0])
    return np.stack(results)


def load_eval(path: str, dims: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    """--eval-npz's samples x and labels y (None: no y, or not integer labels), read before
    any conversion work so a bad file fails first."""
    return (x := as_samples(path, load_array(path, "x"), dims)), _labels(path, len(x))


def evaluate(model, data: bytes, x: np.ndarray, y: np.ndarray | None) -> Evaluation:
    """Float Keras model and converted model on the samples; top-1 against `y` for a
    classifier (integer labels, one score per class), output error otherwise."""
    ref = np.concatenate([_first(model(x[i:i + 256], training=False))
                          for i in range(0, len(x), 256)])
    got = run_tflite(data, x)
    ref, got = ref.reshape(len(x), -1), got.reshape(len(x), -1)
    if y is not None and ref.shape[1] > 1:
        a, b = ref.argmax(1), got.argmax(1)
        return Evaluation(len(x), float((a == y).mean()), float((b == y).mean()),
                          float((a == b).mean()))
    span = float(ref.max() - ref.min()) or 1.0
    err = np.abs(got - ref) / span
    return Evaluation(len(x), max_error=float(err.max()), mean_error=float(err.mean()))


def _labels(path: str, n: int) -> np.ndarray | None:
    """--eval-npz's y as integer class labels, or None (no y, or not labels)."""
    try:
        data = np.load(path, allow_pickle=False)  # readable: load_array read it
        if not isinstance(data, np.lib.npyio.NpzFile):
            return None
        with data:
            if "y" not in data:
                return None
            y = data["y"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GenericError(f"{path}: array 'y' is unreadable ({_one_line(e)})") from None
    if y.ndim != 1 or len(y) != n:
        raise GenericError(f"{path}: y has shape {tuple(y.shape)}; expected ({n},), one label "
                           "per sample of x")
    if not np.issubdtype(y.dtype, np.integer):
        return None
    return y


def _first(out) -> np.ndarray:
    out = out[0] if isinstance(out, (list, tuple)) else out
    return np.asarray(out, np.float32)


# ---------------------------------------------------------------- the run

def run(args: argparse.Namespace) -> int:
    """Load, fix, calibrate, convert, write, check, evaluate: the exit status."""
    from .edgetpu_check import check, format_report
    from yolo_tpu.tflite_file import add_metadata

    from .tflite_out import c_name, to_tflite, write, write_c_array
    if args.eval is not None:
        raise GenericError(f"--eval applies to yolo_tpu models; for {args.model} use --eval-npz")
    labels = _read_labels(args.labels) if args.labels else ()
    model = load_any(args.model)
    fixed, dims = fixed_batch(model, args.model, args.input_shape)
    print(f"{args.model}: input {_shape((1, *dims))} (batch fixed to 1), "
          f"{len(fixed.outputs)} output{'s' * (len(fixed.outputs) != 1)}")
    images = bool(args.calib) and not any(p.lower().endswith(ARRAY_EXTENSIONS) for p in args.calib)
    preprocess = args.preprocess or ("0..1" if images and args.mode == "int8" else None)
    norm = parse_preprocess(preprocess) if preprocess else None
    eval_data = load_eval(args.eval_npz, dims) if args.eval_npz else None
    representative = None
    if args.mode == "int8":
        samples = calibration_samples(args.calib, dims, args.num, norm, args.model)
        print(f"calibrating on {len(samples)} sample{'s' * (len(samples) != 1)}"
              + (f" (images, --preprocess {preprocess})" if images else ""))
        representative = feed(samples)
    io = args.io or "int8"
    try:
        data = to_tflite(fixed, args.mode, io, representative)
    except Exception as e:  # the converter's own error (an op int8 cannot express, ...)
        raise GenericError(f"{args.model}: the TFLite converter failed: {_one_line(e)}") from None
    if norm is not None or labels:
        mean, std = norm or (None, None)  # labels alone: the preprocessing stays unknown
        meta = ClassifierMeta(mean, std, labels)
        data = add_metadata(data, {METADATA_KEY: meta.to_json().encode()})
    write(args.output, data)
    print(f"wrote {args.output} ({len(data) / 1e3:.1f} kB, {args.mode}"
          + (f", {io} input and output" if args.mode == "int8" else "") + ")")
    if args.c_array:
        write_c_array(args.c_array, data, c_name(args.output))
    report = check(data)
    print(format_report(report))
    # the loaded model, not the batch-1 one: it scores the samples 256 at a time
    evaluation = evaluate(model, data, *eval_data) if eval_data is not None else None
    if evaluation is not None:
        print(evaluation.describe(args.mode))
    if args.report_json:
        from .report import write_report
        extra = {} if evaluation is None else {"eval": evaluation.__dict__}
        write_report(args.report_json, {"edgetpu": {"mapped": report.tpu_count,
                                                    "ops": report.total}} | extra)
        print(f"wrote {args.report_json}")
    return 0


def _read_labels(path: str) -> tuple[str, ...]:
    from yolo_tpu.model_trial import ModelError
    from yolo_tpu.classifier import read_labels
    try:
        return read_labels(path)
    except ModelError as e:
        raise GenericError(str(e)) from None
