"""The Edge TPU toolchain held against real `edgetpu_compiler` 16 output.

tests/fixtures/edgetpu_real holds models beside what the real compiler made of them
(google-coral/test_data). The truth of which op ran where is read from each compiled file
by tensor name; the checker must agree on every op, the compiler stand-in must produce the
same structure from the same placement, and the runtime's reader must read every compiled
file. No TensorFlow here: these tests use only the flatbuffer reader.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import edgetpu_standin
from converters import edgetpu_check as ec
from converters import edgetpu_compile as ecc
from converters import edgetpu_memory as em
from yolo_tpu import tflite_file as tm

REAL = Path(__file__).parent / "fixtures" / "edgetpu_real"
PAIRS = [
    "mobilenet_v1_0.25_128_quant",
    "split_concat",
    "keras_lstm_mnist_ptq",
    "movenet_single_pose_lightning_ptq",
    "posenet_mobilenet_v1_075_353_481_16_quant_decoder",
]
COMPILED = sorted(p.name for p in REAL.glob("*_edgetpu.tflite"))
# What each pair shows, measured from the compiled files (ops, of which on the Edge TPU).
EXPECTED = {
    "mobilenet_v1_0.25_128_quant": (31, 31),
    "split_concat": (3, 3),
    "keras_lstm_mnist_ptq": (6, 6),
    "movenet_single_pose_lightning_ptq": (157, 98),
    "posenet_mobilenet_v1_075_353_481_16_quant_decoder": (38, 37),
}


def load(name: str) -> tuple[bytes, tm.TfliteModel]:
    raw = (REAL / name).read_bytes()
    return raw, tm.load_model(raw)


def truth(stem: str) -> tuple[tm.TfliteModel, list[bool]]:
    _, model = load(f"{stem}.tflite")
    _, compiled = load(f"{stem}_edgetpu.tflite")
    return model, ec.placement_from_compiled(model, compiled)


@pytest.mark.parametrize("stem", PAIRS)
def test_checker_agrees_with_the_compiler_on_every_op(stem: str) -> None:
    model, placement = truth(stem)
    assert (len(placement), sum(placement)) == EXPECTED[stem]
    report = ec.check_model(model)
    wrong = ec.disagreements(report, placement)
    agree = report.total - len(wrong)
    detail = [f"op {op.index} {op.op}: predicted {op.prediction}" for op in wrong]
    print(f"{stem}: the checker agrees with edgetpu_compiler 16 on {agree} of "
          f"{report.total} ops")
    assert agree == report.total, f"{stem}: {agree} of {report.total} ops agree; {detail}"


def test_what_the_pairs_show() -> None:
    # int16 LSTM cell state, mapped (the old checker said DATA_TYPE and lost 5 of 6 ops)
    model, placement = truth("keras_lstm_mnist_ptq")
    lstm = next(op for op in model.operators if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    assert any(model.tensor(i).dtype == "INT16" and model.tensor(i).is_variable
               for i in lstm.inputs if i >= 0)
    assert placement[lstm.index]
    # RESIZE_BILINEAR with half_pixel_centers: mapped by compiler 16
    model, placement = truth("movenet_single_pose_lightning_ptq")
    resizes = [op for op in model.operators if op.name == "RESIZE_BILINEAR"]
    assert resizes and all(op.options["half_pixel_centers"] and placement[op.index]
                           for op in resizes)
    # CPU ops that are not a suffix: mapped ops come after the first CPU op in op order
    first_cpu = placement.index(False, 2)  # ops 0-1 are the float input's CAST/QUANTIZE
    assert any(placement[first_cpu:])
    report = ec.check_model(model)
    assert any(op.status == ec.SUBGRAPH for op in report.ops)  # int8 ops after ARG_MAX


def test_op_version_table_covers_every_mapped_op() -> None:
    for stem in PAIRS:
        model, placement = truth(stem)
        for op, tpu in zip(model.operators, placement):
            if tpu:
                limit, evidence = ec.OP_VERSIONS[op.name]
                assert op.version <= limit, (stem, op.name, op.version)
                assert evidence


@pytest.mark.parametrize("name", COMPILED)
def test_real_compiled_files_are_read(name: str, tmp_path: Path) -> None:
    raw, model = load(name)
    custom = [op for op in model.operators if op.custom_code == tm.EDGETPU_CUSTOM_CODE]
    assert len(custom) == 1 and custom[0].version == 1
    assert all(op.version == 1 for op in model.operators)  # CPU ops rewritten to v1
    inputs, outputs = tm.read_io(raw)
    assert inputs and outputs
    metadata, codes = tm.read_summary(raw)
    assert tm.EDGETPU_CUSTOM_CODE in codes
    assert "min_runtime_version" not in metadata and "yolo_tpu" not in metadata
    (offset, payload), = tm.custom_payloads(raw)
    assert len(payload) > 50_000 and offset % 4 == 0
    report = ec.check_model(model, name)
    assert report.compiled and report.edgetpu_custom_ops == 1
    # the runtime's start-up path: compiled, no metadata -> one line saying what to do
    from yolo_tpu.detector import ModelError, read_model_info
    lonely = tmp_path / name
    lonely.write_bytes(raw)
    with pytest.raises(ModelError) as err:
        read_model_info(str(lonely))
    message = str(err.value)
    assert "\n" not in message and "compiled model without yolo_tpu metadata" in message
    assert "--metadata-from" in message


@pytest.mark.parametrize("stem", PAIRS)
def test_standin_compiler_matches_the_real_structure(stem: str) -> None:
    raw, model = load(f"{stem}.tflite")
    real_raw, real = load(f"{stem}_edgetpu.tflite")
    placement = ec.placement_from_compiled(model, real)
    mine_raw = edgetpu_standin.compile_like_edgetpu(raw, placement)
    mine = tm.load_model(mine_raw)

    def ops(m: tm.TfliteModel) -> list[tuple]:
        return [(op.name, op.custom_code, op.version) for op in m.operators]

    def custom_io(m: tm.TfliteModel) -> list[tuple]:
        return [({m.tensor(i).name for i in op.inputs}, {m.tensor(i).name for i in op.outputs})
                for op in m.operators if op.custom_code]

    assert ops(mine) == ops(real)
    assert custom_io(mine) == custom_io(real)
    assert tm.read_io(mine_raw) == tm.read_io(real_raw) == tm.read_io(raw)
    assert len(mine.tensors) == len(real.tensors)
    assert not mine.metadata and "min_runtime_version" not in real.metadata
    assert ec.placement_from_compiled(model, mine) == placement
    from ai_edge_litert import schema_py_generated as schema
    for data in (mine_raw, real_raw):
        root = schema.Model.GetRootAs(data, 0)
        assert root.SignatureDefsLength() == 0


def test_compiled_metadata_is_the_publishers() -> None:
    # One real compiled file keeps a TFLITE_METADATA entry, byte-identical to its input's
    # (google-coral/test_data adds model cards); min_runtime_version is gone from all.
    source = tm.read_metadata(REAL / "mobilenet_v1_0.25_128_quant.tflite")
    compiled = tm.read_metadata(REAL / "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
    assert set(compiled) == {"TFLITE_METADATA"}
    assert compiled["TFLITE_METADATA"] == source["TFLITE_METADATA"]
    assert "min_runtime_version" in source


@pytest.mark.parametrize("name", COMPILED)
def test_metadata_goes_back_without_touching_the_executable(name: str) -> None:
    raw = (REAL / name).read_bytes()
    before = tm.custom_payloads(raw)
    new = tm.add_metadata(raw, {"yolo_tpu": b'{"format": "yolo_tpu/1"}'})
    after = tm.custom_payloads(new)
    assert [p for _, p in after] == [p for _, p in before]
    assert all(offset % 4 == 0 for offset, _ in after)
    assert tm.read_metadata(new)["yolo_tpu"] == b'{"format": "yolo_tpu/1"}'
    assert tm.read_io(new) == tm.read_io(raw)


def test_embed_metadata_checks_the_pair(tmp_path: Path) -> None:
    source = tmp_path / "split_concat.tflite"
    source.write_bytes(tm.add_metadata((REAL / "split_concat.tflite").read_bytes(),
                                       {"yolo_tpu": b"{}"}))
    compiled = tmp_path / "split_concat_edgetpu.tflite"
    compiled.write_bytes((REAL / "split_concat_edgetpu.tflite").read_bytes())
    payload = tm.custom_payloads(compiled.read_bytes())[0][1]
    ecc.embed_metadata(source, compiled)
    assert tm.read_metadata(compiled)["yolo_tpu"] == b"{}"
    assert tm.custom_payloads(compiled.read_bytes())[0][1] == payload
    other = tmp_path / "mobilenet_edgetpu.tflite"
    other.write_bytes((REAL / "mobilenet_v1_0.25_128_quant_edgetpu.tflite").read_bytes())
    before = other.read_bytes()
    with pytest.raises(ecc.MetadataError, match="was not compiled from"):
        ecc.embed_metadata(source, other)
    assert other.read_bytes() == before  # left untouched


def test_compiler_memory_lines_are_parsed() -> None:
    text = (REAL / "logs" / "yolov5s-224_compiler16_stdout.txt").read_text()
    report = ecc.parse_report(text)
    assert report.memory == {"cached": round(6.08 * 2**20), "remaining": 0,
                             "streamed": round(1.70 * 2**20)}
    assert (report.subgraphs, report.total_ops, report.tpu_ops, report.cpu_ops) == (2, 294, 289, 5)
    assert sum(r.count for r in report.rows) == 294
    lines = em.compiler_lines(report.memory)
    assert "On-chip memory used for caching model parameters: 6.08MiB" in lines[1]
    assert "streaming uncached model parameters: 1.70MiB" in lines[2]


def test_memory_estimate_against_the_cache() -> None:
    model, placement = truth("movenet_single_pose_lightning_ptq")
    params = em.parameter_bytes(model, placement)
    assert 2.0 * 2**20 < params < 2.5 * 2**20
    assert em.MemoryEstimate(params).streamed_high == 0
    big = em.MemoryEstimate(int(8.5 * 2**20))
    assert 1.6 < big.streamed_low / 2**20 < big.streamed_high / 2**20 < 2.5
    text = "\n".join(big.lines())
    assert "8.50 MiB" in text and "streamed over USB/PCIe on every inference" in text
    assert "segmenting across Edge TPUs" in text
