"""Bounded, seeded fuzzing of every reader: cfg, weights, metadata/sidecar JSON, images,
videos, TFLite models (through the crash boundary) and a few CLI runs end to end.

Each case must end in a result or in the reader's own one-line error: no other exception
(a traceback for the user), no hang, no native crash. Readers are fuzzed in-process; only
the model trials (a child process each, by design) and the CLI runs start processes.
The counts per reader are printed in the terminal summary (tests/conftest.py).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FUZZ_COUNTS, ROOT, SAMPLES

FIXTURE = Path(__file__).parent / "fixtures" / "fuzz"
TINY_CFG = FIXTURE / "tiny64.cfg"
HOSTILE = ["0", "-1", "1e23", "2147483648", "100000000", "nan", "inf", "-inf", "", "abc",
           "1,2", "3.5", "0x10", "99999999999999999999", " ", "1,,2", "-2147483649"]


def one_line(e: BaseException) -> None:
    text = str(e)
    assert text and "\n" not in text and "Traceback" not in text, repr(text)


def count(reader: str, n: int) -> None:
    FUZZ_COUNTS[reader] = FUZZ_COUNTS.get(reader, 0) + n


# --- cfg --------------------------------------------------------------------------------


def cfg_mutations(rng: np.random.Generator, n: int):
    lines = TINY_CFG.read_text().splitlines()
    keyed = [i for i, l in enumerate(lines) if "=" in l]
    extra = ["[sam]\nfrom=", "[sam]\nfrom=-1,-2", "[scale_channels]\nfrom=", "[route]\nlayers=",
             "[upsample]\nstride=-3", "[yolo]\nmask=0,1,2\nnum=2147483648", "[shortcut]\nfrom=5"]
    for _ in range(n):
        out = list(lines)
        for _ in range(int(rng.integers(1, 4))):
            choice = rng.random()
            if choice < 0.7:
                i = int(rng.choice(keyed))
                key = out[i].split("=", 1)[0]
                out[i] = f"{key}={HOSTILE[int(rng.integers(len(HOSTILE)))]}"
            elif choice < 0.85:
                out.insert(int(rng.integers(1, len(out))), extra[int(rng.integers(len(extra)))])
            else:
                del out[int(rng.integers(1, len(out)))]
        yield "\n".join(out) + "\n"


def test_fuzz_cfg(tmp_path):
    from converters.cfg import ConfigError, parse_cfg
    rng = np.random.default_rng(19)
    path = tmp_path / "m.cfg"
    n = refused = 0
    for text in cfg_mutations(rng, 300):
        path.write_text(text)
        try:
            net = parse_cfg(str(path))
            assert all(h * w * c <= 2 ** 30 for h, w, c in (l.shape for l in net.layers))
        except ConfigError as e:
            one_line(e)
            refused += 1
        n += 1
    count("cfg", n)
    assert refused > n // 2  # the mutations do reach the checks


# --- class names (--names) ---------------------------------------------------------------


def names_mutations(rng: np.random.Generator, n: int):
    """Two good names files, bytes flipped or spliced in, and binary files passed by
    mistake (a JPEG, a weights header, random bytes, invalid UTF-8)."""
    good = b"dog\ncat\n"
    photo = (SAMPLES / "dog.jpg").read_bytes()
    for i in range(n):
        kind = i % 4
        if kind == 0:
            data = bytearray(good * int(rng.integers(1, 3)))
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(len(data)))] = int(rng.integers(256))
            yield bytes(data)
        elif kind == 1:
            start = int(rng.integers(len(photo) - 512))
            yield photo[start:start + int(rng.integers(1, 512))]
        elif kind == 2:
            yield rng.integers(0, 256, int(rng.integers(1, 256)), dtype=np.uint8).tobytes()
        else:
            yield good + bytes([0xC3 + int(rng.integers(20))]) + b"\n"


def test_fuzz_names(tmp_path):
    """Every names file gives its 2 names or one line naming the file, never a traceback."""
    from converters.cfg import ConfigError
    from converters.darknet import read_names
    rng = np.random.default_rng(19)
    path = tmp_path / "m.names"
    n = refused = binary = 0
    for data in names_mutations(rng, 200):
        path.write_bytes(data)
        try:
            names = read_names(str(path), 2)
            assert len(names) == 2 and all(isinstance(x, str) for x in names)
        except ConfigError as e:
            one_line(e)
            assert str(path) in str(e)
            refused += 1
            binary += "not a text file of class names" in str(e)
        n += 1
    count("names", n)
    assert refused > n // 2 and binary > n // 4


def test_converter_names_of_a_binary_file_is_one_line(tmp_path):
    """`--names` of an image (a binary file): one line naming it, before any conversion."""
    photo = SAMPLES / "dog.jpg"
    r = subprocess.run([sys.executable, "-m", "converters", str(TINY_CFG),
                        str(tmp_path / "none.weights"), "--names", str(photo), "--out-dir",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = [x for x in r.stderr.splitlines() if x.strip()]
    assert str(photo) in line and "not a text file of class names" in line, line
    assert not (tmp_path / "out").exists()
    count("CLI", 1)


# --- weights ----------------------------------------------------------------------------


def test_fuzz_weights(tmp_path):
    from converters.cfg import parse_cfg
    from converters.weights import WeightsError, load_weights, write_weights
    net = parse_cfg(str(TINY_CFG))
    good = tmp_path / "good.weights"
    write_weights(str(good), net, np.random.default_rng(0))
    raw = good.read_bytes()
    rng = np.random.default_rng(19)
    path = tmp_path / "m.weights"
    n = refused = 0
    specials = [np.nan, np.inf, -np.inf, -1.0, -1e30, 1e38]
    for k in range(200):
        data = bytearray(raw)
        kind = k % 4
        if kind == 0:
            data = data[:int(rng.integers(0, 40))]  # headers of 0-39 bytes (16-19 included)
        elif kind == 1:
            data = data[:int(rng.integers(20, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                pos = 20 + 4 * int(rng.integers((len(data) - 20) // 4))
                data[pos:pos + 4] = struct.pack("<f", specials[int(rng.integers(len(specials)))])
            if kind == 3:
                data[:12] = struct.pack("<3i", *rng.integers(-5, 2000, 3))
        path.write_bytes(bytes(data))
        try:
            weights = load_weights(str(path), net)
            assert all(np.isfinite(w.kernel).all() and np.isfinite(w.bias).all()
                       for w in weights.values())
        except WeightsError as e:
            one_line(e)
            refused += 1
        n += 1
    count("weights", n)
    assert refused > n // 2


# --- metadata and sidecar JSON ----------------------------------------------------------

GOOD_META = {"format": "yolo_tpu/1", "width": 64, "height": 64, "classes": 2,
             "heads": [{"mask": [0, 1, 2], "anchors": [[10, 14], [23, 27], [37, 58]],
                        "stride": 16, "kind": "yolo", "scale_x_y": 1.0, "new_coords": False}],
             "names": ["a", "b"], "leaky": "addrelu", "letter_box": True,
             "nms_kind": "default", "beta_nms": 0.6}
JSON_VALUES = [None, "x", "", 0, -1, 0.0, 1e308, float("nan"), True, [], {}, [[]], [0] * 3,
               [1e23], {"a": 1}, "greedynms", "nonsense", 2 ** 63, [0, 1, 2, 3, 4]]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def meta_mutations(rng: np.random.Generator, n: int):
    paths = [p for p in _paths(GOOD_META) if p]
    fixed = ["null", '"a string"', "[" * 100000 + "]" * 100000, '{"format": "yolo_tpu/1"}',
             "\xff\xfe", "", "{" * 5000]
    yield from (t.encode("utf-8", "surrogateescape") for t in fixed)
    for _ in range(n - len(fixed)):
        d = json.loads(json.dumps(GOOD_META))
        for _ in range(int(rng.integers(1, 3))):
            path = paths[int(rng.integers(len(paths)))]
            target = d
            try:
                for p in path[:-1]:
                    target = target[p]
                if rng.random() < 0.1 and isinstance(target, dict):
                    del target[path[-1]]
                else:
                    target[path[-1]] = JSON_VALUES[int(rng.integers(len(JSON_VALUES)))]
            except (KeyError, IndexError, TypeError):
                pass
        yield json.dumps(d).encode()


def test_fuzz_metadata_and_sidecar(tmp_path):
    """ModelMeta.from_json (embedded metadata) and a compiled model's sidecar JSON through
    read_model_info: a ModelMeta whose heads the decoder can index, or one line."""
    from yolo_tpu.detector import ModelError, read_model_info
    from yolo_tpu.meta import ModelMeta
    rng = np.random.default_rng(19)
    n = refused = 0
    for payload in meta_mutations(rng, 300):
        try:
            meta = ModelMeta.from_json(payload)
            for h in meta.heads:
                assert len(h.anchors) == len(h.mask) and h.stride > 0
                assert meta.width % h.stride == 0
        except ValueError as e:
            one_line(e)
            refused += 1
        n += 1
    count("metadata JSON", n)
    assert refused > n // 3
    # sidecar: the compiled-model path of read_model_info, with the real compiler output
    compiled = ROOT / "tests" / "fixtures" / "edgetpu_real"
    models = sorted(compiled.glob("*_edgetpu.tflite"))
    if not models:
        pytest.skip("no compiled model fixture")
    model = tmp_path / "m_edgetpu.tflite"
    model.write_bytes(models[0].read_bytes())
    sidecar = tmp_path / "m_edgetpu.yolo_tpu.json"
    k = 0
    for payload in meta_mutations(np.random.default_rng(20), 60):
        sidecar.write_bytes(payload)
        try:
            read_model_info(str(model))
        except ModelError as e:
            one_line(e)
        k += 1
    count("sidecar JSON", k)


# --- images -----------------------------------------------------------------------------


def _png_with_size(w: int, h: int) -> bytes:
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_fuzz_images(tmp_path):
    """detect's read_image and the converter's (calibration/--eval) on mutated PNG, JPEG and
    BMP files, headers claiming huge sizes included: an image, or one line."""
    from converters.calibration import read_image as calib_read
    from yolo_tpu.detect import ImageError, read_image
    photo = cv2.resize(cv2.imread(str(SAMPLES / "dog.jpg")), (48, 36))
    seeds = [cv2.imencode(ext, photo)[1].tobytes() for ext in (".png", ".jpg", ".bmp")]
    fixed = [b"", _png_with_size(100000, 100000), _png_with_size(0, 5),
             _png_with_size(2 ** 31 - 1, 2 ** 31 - 1)]
    rng = np.random.default_rng(19)
    path = tmp_path / "m.img"
    cases = list(fixed)
    for k in range(300 - len(fixed)):
        data = bytearray(seeds[k % 3])
        if rng.random() < 0.3:
            data = data[:int(rng.integers(1, len(data)))]
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, min(len(data), 64 if rng.random() < 0.7 else len(data))))
            data[pos] = int(rng.integers(256))
        cases.append(bytes(data))
    for data in cases:
        path.write_bytes(data)
        try:
            image = read_image(str(path))
            assert image.size <= 2 ** 28 * 4
        except ImageError as e:
            one_line(e)
        image, problem = calib_read(str(path))
        assert (image is None) != (problem is None)
        if problem:
            assert "\n" not in problem
    count("images", 2 * len(cases))


# --- videos -----------------------------------------------------------------------------


def _avi(path: Path, frames: int) -> bytes:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (32, 24))
    for i in range(frames):
        w.write(np.full((24, 32, 3), i * 5 % 256, np.uint8))
    w.release()
    return path.read_bytes()


def _announce(data: bytes, frames: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, out.find(b"avih") + 8 + 16, frames)
    struct.pack_into("<I", out, out.find(b"strh") + 8 + 32, frames)
    return bytes(out)


def _read_all(path: Path, deadline: float = 20.0) -> tuple[int, BaseException | None]:
    """Frames read from `path` by VideoSource, within `deadline` seconds (else: a hang)."""
    from yolo_tpu.sources import VideoSource, video_spec
    result: list = [0, None]

    def read() -> None:
        try:
            with VideoSource(video_spec(str(path))) as src:
                for _ in src.frames():
                    result[0] += 1
        except Exception as e:  # noqa: BLE001 - judged below
            result[1] = e

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(deadline)
    assert not t.is_alive(), f"{path.name}: still reading after {deadline:g} s"
    return result[0], result[1]


def test_video_announcing_a_billion_frames_ends_after_its_last(tmp_path):
    """An AVI whose header announces 999,999,999 frames and holds 40 ends at frame 40
    (it spun for about 27 minutes before)."""
    path = tmp_path / "liar.avi"
    path.write_bytes(_announce(_avi(path, 40), 999_999_999))
    frames, error = _read_all(path)
    assert (frames, error) == (40, None)


def test_fuzz_videos(tmp_path):
    from yolo_tpu.sources import SourceError
    seed = _avi(tmp_path / "seed.avi", 12)
    rng = np.random.default_rng(19)
    n = 0
    for k in range(40):
        data = _announce(seed, int(rng.choice([0, 1, 13, 2 ** 31 - 1, 999_999_999])))
        data = bytearray(data)
        for _ in range(int(rng.integers(0, 8))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        if k % 5 == 0:
            data = data[:int(rng.integers(8, len(data)))]
        path = tmp_path / f"m{k}.avi"
        path.write_bytes(bytes(data))
        frames, error = _read_all(path)
        if error is not None:
            assert isinstance(error, SourceError), repr(error)
            one_line(error)
        assert frames <= 12 + 1
        n += 1
    count("videos", n)


# --- TFLite models, through the crash boundary ------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A 64x64 one-head int8 model (8 KB): quick to load in a trial child."""
    from converters.calibration import DEFAULT_CALIB, load_images
    from converters.cfg import parse_cfg
    from converters.darknet import convert
    from converters.quantize import quantize
    from converters.weights import write_weights
    folder = tmp_path_factory.mktemp("fuzzmodel")
    weights = folder / "tiny64.weights"
    write_weights(str(weights), parse_cfg(str(TINY_CFG)), np.random.default_rng(0))
    c = convert(str(TINY_CFG), str(weights), "addrelu")
    model = folder / "tiny64_int8.tflite"
    model.write_bytes(quantize(c.model, c.meta, "int8", None, 4, progress=False,
                               images=load_images(list(DEFAULT_CALIB))))
    return model


# Single bytes of tiny64_int8.tflite whose change made LiteRT 2.3 segfault in
# allocate_tensors (found by forking 400 random one-byte mutations); the offsets belong to
# this model as the converter writes it, so the test first checks they still crash.
def _crashes_in_process(data: bytes) -> bool:
    code = ("import sys, numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
            "it = Interpreter(model_content=sys.stdin.buffer.read()); it.allocate_tensors()\n"
            "[it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])) "
            "for d in it.get_input_details()]\nit.invoke()\n")
    try:
        r = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        return True
    return r.returncode < 0


def test_fuzz_models_through_the_crash_boundary(tiny_model, tmp_path, monkeypatch):
    """Mutated models (one to three bytes) go through load_interpreter: a working
    interpreter, or one ModelError line; a native crash or hang in the child is a verdict,
    never this process's death. The verdict is cached by the file's SHA-256."""
    from yolo_tpu import model_trial
    from yolo_tpu.backends import BackendError
    from yolo_tpu.model_trial import ModelError, load_interpreter
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("YOLO_TPU_TRIAL_TIMEOUT", "5")
    raw = tiny_model.read_bytes()
    rng = np.random.default_rng(19)
    verdicts: dict[str, int] = {}
    n = 0
    for k in range(24):
        data = bytearray(raw)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        path = tmp_path / f"m{k}.tflite"
        path.write_bytes(bytes(data))
        try:
            load_interpreter(str(path), "cpu")
            verdict = "ok"
        except (ModelError, BackendError) as e:
            one_line(e)
            verdict = "refused"
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        n += 1
    count("tflite (trial child)", n)
    cached = model_trial._read_cache()["verdicts"]
    assert len(cached) >= n - verdicts.get("hang", 0) - 2  # kept by content (duplicates aside)
    assert verdicts.get("refused", 0) >= 1


def test_native_crash_becomes_one_line_and_is_remembered(tiny_model, tmp_path, monkeypatch):
    """One changed byte that segfaults LiteRT: detect used to die (exit 134/139, nothing
    printed); now one line names the model, and the second run answers from the cache."""
    import time
    raw = bytearray(tiny_model.read_bytes())
    rng = np.random.default_rng(7)
    bad = None
    for _ in range(400):  # search a crashing byte among seeded mutations (forked cheaply)
        data = bytearray(raw)
        pos = int(rng.integers(len(data)))
        data[pos] = int(rng.integers(256))
        if _fork_crashes(bytes(data)):
            bad = bytes(data)
            break
    if bad is None:
        pytest.skip("no crashing one-byte mutation of this model with this LiteRT")
    model = tmp_path / "damaged.tflite"
    model.write_bytes(bad)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "YOLO_TPU_TRIAL_TIMEOUT": "10"}
    runs = []
    for _ in range(2):
        started = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--model", str(model),
                            "--image", str(SAMPLES / "dog.jpg")], capture_output=True,
                           text=True, env=env, timeout=120, cwd=ROOT)
        runs.append(time.monotonic() - started)
        assert r.returncode == 2, (r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(model) in lines[0] and "Traceback" not in r.stderr
        assert "crashes" in lines[0] or "did not finish" in lines[0]
    cache = json.loads((tmp_path / "cache" / "yolo_tpu" / "model_trials.json").read_text())
    assert any(v["verdict"] in ("crash",) for v in cache["verdicts"].values()) or \
        "did not finish" in lines[0]
    count("tflite (CLI)", 2)


def _fork_crashes(data: bytes) -> bool:
    """Whether LiteRT dies of a signal loading and invoking `data` (in a forked child)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            import faulthandler
            faulthandler.disable()  # pytest's: it would print this child's stack
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 2)
            import signal
            signal.alarm(5)
            from ai_edge_litert.interpreter import Interpreter
            it = Interpreter(model_content=data)
            it.allocate_tensors()
            for d in it.get_input_details():
                it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
            it.invoke()
        except BaseException:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) in (-6, -11)


# --- CLI end to end ---------------------------------------------------------------------


def test_cli_hostile_inputs_one_line(tiny_model, tmp_path):
    """A few end-to-end runs: detect on a PNG claiming 100000x100000 and on a zero-byte
    image, and the converter on width=100000000 and on a weights file of 18 bytes."""
    big = tmp_path / "big.png"
    big.write_bytes(_png_with_size(100000, 100000))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "yolo_tpu.detect", "--model", str(tiny_model),
                        "--image", str(big)], capture_output=True, text=True, env=env,
                       timeout=120, cwd=ROOT)
    assert "Traceback" not in r.stderr and r.returncode != 0
    assert "100000x100000" in r.stderr and str(big) in r.stderr
    cfg = tmp_path / "wide.cfg"
    cfg.write_text(TINY_CFG.read_text().replace("width=64", "width=100000000"))
    short = tmp_path / "short.weights"
    short.write_bytes(struct.pack("<3i", 0, 2, 0) + b"\0" * 6)  # 18 bytes
    for args, expect in (([str(cfg), str(short)], "width=100000000"),
                         ([str(TINY_CFG), str(short)], "18 bytes")):
        r = subprocess.run([sys.executable, "-m", "converters", *args, "--out-dir",
                            str(tmp_path / "out")], capture_output=True, text=True,
                           timeout=300, cwd=ROOT)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert expect in r.stderr.strip().splitlines()[-1]
    count("CLI", 3)


# --- the named cases, each one line now (each was a traceback or silence) ---------

def _meta_with(**edits) -> bytes:
    d = json.loads(json.dumps(GOOD_META))
    for key, value in edits.items():
        if key.startswith("head_"):
            d["heads"][0][key[5:]] = value
        else:
            d[key] = value
    return json.dumps(d).encode()


@pytest.mark.parametrize("payload,expect", [
    (b"null", "not an object"), (b'"text"', "not an object"),
    (b"[" * 100000 + b"]" * 100000, "nested"),
    (_meta_with(head_mask=[]), "'mask'"), (_meta_with(head_stride=0), "'stride'"),
    (_meta_with(nms_kind="fastnms"), "'nms_kind'"),
    (_meta_with(head_mask=[0, 1, 2], head_anchors=[[10, 14]]), "3 mask entries but 1 anchors"),
])
def test_named_metadata_cases(payload, expect):
    from yolo_tpu.meta import ModelMeta
    with pytest.raises(ValueError, match=expect.replace("[", r"\[")) as e:
        ModelMeta.from_json(payload)
    one_line(e.value)


def test_new_coords_flipped_is_refused(tiny_model, tmp_path, monkeypatch):
    """new_coords set on a model whose head outputs logits: every score would exceed 1."""
    from yolo_tpu.detector import Detector, ModelError
    from yolo_tpu.tflite_file import add_metadata, read_metadata
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    raw = tiny_model.read_bytes()
    meta = json.loads(read_metadata(raw)["yolo_tpu"])
    meta["heads"][0]["new_coords"] = True
    model = tmp_path / "flipped.tflite"
    model.write_bytes(add_metadata(raw, {"yolo_tpu": json.dumps(meta).encode()}))
    with pytest.raises(ModelError, match="new_coords"):
        Detector(str(model), "cpu")
    Detector(str(tiny_model), "cpu")  # the model as converted loads


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t.replace("[maxpool]", "[sam]\nfrom=\n[maxpool]", 1), "exactly one 'from'"),
    (lambda t: t.replace("[maxpool]", "[scale_channels]\nfrom=-1,-2\n[maxpool]", 1),
     "exactly one 'from'"),
    (lambda t: t.replace("num=3", "num=2147483648"), "num=2147483648"),
    (lambda t: t.replace("width=64", "width=100000000"), "width=100000000"),
    (lambda t: t.replace("filters=21", "filters=100000000000"), "out of range"),
])
def test_named_cfg_cases(tmp_path, edit, expect):
    from converters.cfg import ConfigError, parse_cfg
    path = tmp_path / "m.cfg"
    path.write_text(edit(TINY_CFG.read_text()))
    with pytest.raises(ConfigError, match=expect) as e:
        parse_cfg(str(path))
    assert f"{path}:" in str(e.value)


@pytest.mark.parametrize("where,value,expect", [
    ("kernel", float("nan"), "non-finite"), ("bias", float("inf"), "non-finite"),
    ("variance", -0.5, "negative batch-norm variance")])
def test_named_weights_cases(tmp_path, where, value, expect):
    from converters.cfg import parse_cfg
    from converters.weights import WeightsError, load_weights, write_weights
    net = parse_cfg(str(TINY_CFG))
    path = tmp_path / "w.weights"
    write_weights(str(path), net, np.random.default_rng(0))
    data = bytearray(path.read_bytes())
    # first convolution (8 filters, BN): bias[0:8], scales, mean, variance, then kernel
    offset = 20 + 4 * {"bias": 0, "variance": 24, "kernel": 40}[where]
    data[offset:offset + 4] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=expect) as e:
        load_weights(str(path), net)
    assert "tiny64.cfg:6" in str(e.value)  # the layer's cfg line


def test_eval_of_a_zero_byte_image_is_refused(tmp_path):
    from converters.accuracy import split_images
    from converters.calibration import CalibrationError
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(CalibrationError, match="empty file"):
        split_images(None, [str(empty)], coco=True)
