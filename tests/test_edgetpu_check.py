"""The static Edge TPU checker, the flatbuffer reader and the compiler-report parser.

Models are real TF 2.21 conversions (tests/tflite_builders.py), built once per module; each
one breaks one rule of the Edge TPU compiler, and the tests assert the status the checker
gives each op, the CLI's output and exit codes.
"""
from __future__ import annotations

import json
import os
import stat
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from converters import edgetpu_check as ec
from converters import edgetpu_compile as ecc
from yolo_tpu import tflite_file as tm

import edgetpu_standin
import tflite_builders as tb

FIXTURES = Path(__file__).parent / "fixtures" / "edgetpu_compiler"
# TF's converter warns that uint8 input statistics were not given; they are not needed here.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test model, converted once and written to a temporary directory."""
    pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("models")
    built = {
        "ok": tb.quantize_int8(tb.all_supported_model()),
        "leaky": tb.quantize_int8(tb.leaky_model()),
        "upsampling": tb.quantize_int8(tb.upsampling_model()),
        "float": tb.float_tflite(tb.upsampling_model()),
        "dynamic": tb.quantize_int8(tb.small_conv_model(batch_size=None)),
        "float_io": tb.quantize_int8(tb.small_conv_model(), io_type="float32"),
        "branches": tb.quantize_int8(tb.two_branch_model()),
        "sizes": tb.quantize_int8(tb.size_limits_model()),
    }
    paths = {}
    for name, data in built.items():
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(data)
    return paths


def statuses(report: ec.CheckReport) -> list[tuple[str, str]]:
    return [(op.op, op.status) for op in report.ops]


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = ec.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- the flatbuffer reader ----------------------------------------------------------------


def test_reader_lists_ops_in_execution_order_with_options(models: dict[str, Path]) -> None:
    model = tm.read_model(models["ok"])
    assert model.subgraph_count == 1
    assert [op.name for op in model.operators] == [
        "QUANTIZE",
        "CONV_2D",
        "MAX_POOL_2D",
        "RESIZE_NEAREST_NEIGHBOR",
        "CONCATENATION",
        "QUANTIZE",
    ]
    conv, pool, resize = model.operators[1:4]
    assert conv.version == 3
    assert conv.options["fused_activation_function"] == "RELU"
    assert conv.options["padding"] == "SAME"
    assert (conv.options["stride_w"], conv.options["dilation_h_factor"]) == (1, 1)
    assert pool.options["filter_width"] == 2 and pool.options["fused_activation_function"] == "NONE"
    assert resize.options == {"align_corners": False, "half_pixel_centers": False}
    weights, bias = model.tensor(conv.inputs[1]), model.tensor(conv.inputs[2])
    assert weights.is_constant and weights.dtype == "INT8" and weights.shape == (8, 3, 3, 3)
    assert bias.dtype == "INT32" and len(bias.quantization.scale) == 8  # per-channel
    first_in = model.tensor(model.inputs[0])
    assert first_in.dtype == "UINT8" and first_in.shape == (1, 32, 32, 3)
    assert not first_in.is_dynamic
    assert "min_runtime_version" in model.metadata


def test_reader_sees_dynamic_batch(models: dict[str, Path]) -> None:
    model = tm.read_model(models["dynamic"])
    first_in = model.tensor(model.inputs[0])
    assert first_in.shape_signature == (-1, 32, 32, 3) and first_in.is_dynamic


def test_reader_rejects_non_tflite(tmp_path: Path, models: dict[str, Path]) -> None:
    with pytest.raises(tm.NotTfliteError):
        tm.load_model(b"hello world, not a model")
    truncated = models["ok"].read_bytes()[:64]
    with pytest.raises(tm.NotTfliteError):
        tm.load_model(truncated)


def test_metadata_round_trip_still_runs(models: dict[str, Path]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    original = models["ok"].read_bytes()
    payload = json.dumps({"format": "yolo_tpu/1", "classes": 80}).encode()
    with_meta = tm.add_metadata(original, {"yolo_tpu": payload})
    entries = tm.read_metadata(with_meta)
    assert entries["yolo_tpu"] == payload
    assert entries["min_runtime_version"] == tm.read_metadata(original)["min_runtime_version"]

    replaced = tm.add_metadata(with_meta, {"yolo_tpu": b"v2"})
    assert tm.read_metadata(replaced)["yolo_tpu"] == b"v2"
    assert list(tm.read_metadata(replaced)).count("yolo_tpu") == 1
    assert len(replaced) < len(with_meta) + 64  # the old payload was dropped, not kept

    def run(model_bytes: bytes) -> np.ndarray:
        interp = Interpreter(model_content=model_bytes)
        interp.allocate_tensors()
        x = np.random.default_rng(1).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        return interp.get_tensor(interp.get_output_details()[0]["index"])

    expected = run(original)
    assert np.array_equal(run(with_meta), expected)
    assert np.array_equal(run(replaced), expected)
    assert [op.name for op in tm.load_model(replaced).operators] == [
        op.name for op in tm.load_model(original).operators
    ]


# --- the static check ---------------------------------------------------------------------


def test_all_supported_model_maps_everything(models: dict[str, Path], capsys) -> None:
    report = ec.check(models["ok"])
    assert report.all_mapped and report.tpu_count == report.total == 6
    assert not report.notes
    code, out, _ = run_cli(capsys, str(models["ok"]))
    assert code == 0
    assert "Operator                       Count      Predicted placement\n\n" in out
    assert "QUANTIZE                       2          Edge TPU" in out
    assert "RESIZE_NEAREST_NEIGHBOR        1          Edge TPU" in out
    assert "Predicted on the CPU" not in out
    assert "Mapped to Edge TPU" not in out  # the compiler's words are kept for the compiler
    assert out.rstrip().endswith("Predicted: 6 of 6 operations on the Edge TPU "
                                 "(a static prediction; edgetpu_compiler has the final word)")


def test_leaky_relu_cuts_the_edge_tpu_segment(models: dict[str, Path], capsys) -> None:
    report = ec.check(models["leaky"])
    assert statuses(report) == [
        ("QUANTIZE", ec.MAPPED),
        ("CONV_2D", ec.MAPPED),
        ("MAX_POOL_2D", ec.MAPPED),
        ("CONV_2D", ec.MAPPED),
        ("LEAKY_RELU", ec.NOT_SUPPORTED),
        ("CONV_2D", ec.SUBGRAPH),
        ("MAXIMUM", ec.SUBGRAPH),
        ("RESIZE_NEAREST_NEIGHBOR", ec.SUBGRAPH),
        ("CONCATENATION", ec.SUBGRAPH),
        ("QUANTIZE", ec.SUBGRAPH),
    ]
    assert "op 4 (LEAKY_RELU)" in report.ops[6].reason
    code, out, _ = run_cli(capsys, str(models["leaky"]))
    assert code == 1
    assert "LEAKY_RELU                     1          CPU: not an Edge TPU operation" in out
    assert f"{'MAXIMUM':<31}{1:<11}{ec.PREDICTION[ec.SUBGRAPH]}" in out
    assert "CONV_2D                        2          Edge TPU" in out
    assert "  op 4 LEAKY_RELU: CPU: not an Edge TPU operation: LEAKY_RELU is not in" in out
    assert "Predicted: 4 of 10 operations on the Edge TPU" in out


def test_keras_upsampling_is_caught_as_tile_and_rank(models: dict[str, Path]) -> None:
    report = ec.check(models["upsampling"])
    assert statuses(report) == [
        ("QUANTIZE", ec.MAPPED),
        ("CONV_2D", ec.MAPPED),
        ("MAX_POOL_2D", ec.MAPPED),
        ("RESHAPE", ec.RANK),  # -> [1, 16, 1, 16, 8]: 16 outside the 3 innermost dims
        # compiler 16 maps TILE v1 (deeplab pair), but TF 2.21 writes v3 (runtime 2.8.0),
        # which it cannot parse
        ("TILE", ec.VERSION),
        ("RESHAPE", ec.RANK),
        ("TILE", ec.VERSION),
        ("RESHAPE", ec.RANK),
        ("CONCATENATION", ec.SUBGRAPH),
        ("QUANTIZE", ec.SUBGRAPH),
    ]
    assert "[1, 16, 1, 16, 8]" in report.ops[3].reason
    assert report.tpu_count == 3 and not report.all_mapped


def test_size_limits_from_real_compiler_output(models: dict[str, Path], capsys) -> None:
    # Each side of SIZE_LIMITS (fitted in test_edgetpu_real to the pairs): mapped below the
    # largest size seen mapped, a warning between, the CPU from the smallest seen on the CPU.
    report = ec.check(models["sizes"])
    model = tm.read_model(models["sizes"])

    sizes = ec.size_observations(model, [True] * len(model.operators))

    def of(name: str) -> dict[int, ec.OpCheck]:
        return {o.size: report.ops[o.index] for o in sizes if o.op == name}

    transposes = of("TRANSPOSE")
    assert sorted(transposes) == [82944, 97344, 230400]
    assert transposes[82944].status == ec.MAPPED and not transposes[82944].warning
    assert transposes[97344].status == ec.MAPPED
    assert "the data cannot decide" in transposes[97344].warning
    assert transposes[230400].status == ec.UNSPECIFIED
    assert "230400 elements" in transposes[230400].reason
    resizes = of("RESIZE_BILINEAR")
    assert sorted(resizes) == [55296, 82764, 278784]
    assert resizes[55296].status == ec.MAPPED and not resizes[55296].warning
    assert resizes[82764].status == ec.MAPPED and "2x to 82764" in resizes[82764].warning
    assert resizes[278784].status == ec.UNSPECIFIED and "33x" in resizes[278784].reason
    # the op after each CPU op (its output QUANTIZE) follows it; other branches stay mapped
    assert Counter(op.status for op in report.ops)[ec.SUBGRAPH] == 2
    code, out, _ = run_cli(capsys, str(models["sizes"]))
    assert code == 1
    assert "near a limit the compiler does not document" in out
    assert "TRANSPOSE on 97344 elements" in out


def test_float_model_is_an_unsupported_data_type(models: dict[str, Path], capsys) -> None:
    report = ec.check(models["float"])
    assert {op.status for op in report.ops} == {ec.DATA_TYPE}
    assert "FLOAT32" in report.ops[0].reason
    code, out, _ = run_cli(capsys, str(models["float"]))
    assert code == 1
    assert f"{'CONV_2D':<31}{1:<11}CPU: data type" in out
    assert f"Predicted: 0 of {report.total} operations on the Edge TPU" in out


def test_dynamic_batch_is_not_mapped(models: dict[str, Path]) -> None:
    report = ec.check(models["dynamic"])
    assert {op.status for op in report.ops} == {ec.DYNAMIC}
    assert "[-1, 32, 32, 3]" in report.ops[0].reason
    assert any("static-sized" in note for note in report.notes)


def test_float_io_quantize_stays_on_cpu_without_cutting(models: dict[str, Path]) -> None:
    # The float->int8 QUANTIZE before the first mapped op does not end the segment (it just
    # is not in it); the trailing int8->float DEQUANTIZE works on float data.
    report = ec.check(models["float_io"])
    assert statuses(report) == [
        ("QUANTIZE", ec.UNSPECIFIED),
        ("CONV_2D", ec.MAPPED),
        ("MAX_POOL_2D", ec.MAPPED),
        ("DEQUANTIZE", ec.DATA_TYPE),
    ]


def test_newer_op_version_than_the_compiler_knows(models: dict[str, Path]) -> None:
    newer = tb.with_op_version(models["ok"].read_bytes(), "CONV_2D", 6)  # TFLite 2.9's
    report = ec.check(newer)
    assert statuses(report)[1] == ("CONV_2D", ec.VERSION)
    assert "version 6" in report.ops[1].reason
    assert any("could not be parsed" in note for note in report.notes)


def test_nearest_resize_with_half_pixel_centers_is_a_warning(models: dict[str, Path],
                                                              capsys) -> None:
    # Compiler 16 maps RESIZE_BILINEAR with half_pixel_centers (the real movenet pair);
    # for the nearest form there is no compiler-16 evidence either way: a warning.
    def half_pixel(op, code) -> None:
        op.builtinOptions.halfPixelCenters = True

    edited = tb.edit_ops(models["ok"].read_bytes(), "RESIZE_NEAREST_NEIGHBOR", half_pixel)
    report = ec.check(edited)
    assert report.all_mapped
    assert [op.index for op in report.warnings] == [3]
    assert "unverified" in report.ops[3].warning
    path = models["ok"].parent / "half_pixel.tflite"
    path.write_bytes(edited)
    code, out, _ = run_cli(capsys, str(path))
    assert code == 0 and "near a limit the compiler does not document" in out
    assert "  op 3 RESIZE_NEAREST_NEIGHBOR: RESIZE_NEAREST_NEIGHBOR with half_pixel_centers" in out


def test_placement_follows_dependencies_not_op_order(models: dict[str, Path]) -> None:
    # Two branches from the input; conv -> LEAKY_RELU is one of them. With those two moved
    # first, the other branch's ops come after it in the op list but do not depend
    # on it: they map (as in the real movenet pair), where cutting the graph at the first
    # unsupported op in op order would lose them.
    original = tm.read_model(models["branches"])
    leaky = next(op.index for op in original.operators if op.name == "LEAKY_RELU")
    source = original.operators[leaky].inputs[0]
    producer = next(op.index for op in original.operators if source in op.outputs)
    assert original.operators[0].name == "QUANTIZE"  # both branches read its output
    rest = [i for i in range(1, len(original.operators)) if i not in (producer, leaky)]
    order = [0, producer, leaky] + rest
    reordered = tb.reorder_ops(models["branches"].read_bytes(), order)
    report = ec.check(reordered)
    model = tm.load_model(reordered)
    at = next(op.index for op in model.operators if op.name == "LEAKY_RELU")
    leaky_out = model.operators[at].outputs[0]
    independent = [op for op in model.operators[at + 1:] if leaky_out not in op.inputs]
    assert len(independent) >= 3  # conv, conv, max pool, output quantize of the other branch
    assert all(report.ops[op.index].mapped for op in independent), statuses(report)
    dependent = [op for op in model.operators[at + 1:] if leaky_out in op.inputs]
    assert [report.ops[op.index].status for op in dependent] == [ec.SUBGRAPH]
    assert report.ops[at].status == ec.NOT_SUPPORTED
    assert report.tpu_count == report.total - 2


def test_pool_with_fused_activation_and_dilation_mismatch(models: dict[str, Path]) -> None:
    from ai_edge_litert import schema_py_generated as schema

    def fuse_relu(op, code) -> None:
        op.builtinOptions.fusedActivationFunction = schema.ActivationFunctionType.RELU

    def dilate(op, code) -> None:
        op.builtinOptions.dilationWFactor = 2

    pooled = ec.check(tb.edit_ops(models["ok"].read_bytes(), "MAX_POOL_2D", fuse_relu))
    assert pooled.ops[2].status == ec.UNSPECIFIED and "no fused activation" in pooled.ops[2].reason
    dilated = ec.check(tb.edit_ops(models["ok"].read_bytes(), "CONV_2D", dilate))
    assert dilated.ops[1].status == ec.UNSPECIFIED and "same in x and y" in dilated.ops[1].reason


def test_json_output(models: dict[str, Path], capsys) -> None:
    code, out, _ = run_cli(capsys, str(models["leaky"]), "--json")
    assert code == 1
    data = json.loads(out)
    assert (data["total"], data["tpu"], data["cpu"], data["all_mapped"]) == (10, 4, 6, False)
    assert data["ops"][4] == {
        "index": 4,
        "op": "LEAKY_RELU",
        "version": 1,
        "status": ec.NOT_SUPPORTED,
        "reason": "LEAKY_RELU is not in the Edge TPU's supported-operations table",
        "warning": "",
        "mapped": False,
        "prediction": "CPU: not an Edge TPU operation",
    }
    assert {"op": "LEAKY_RELU", "count": 1, "status": ec.NOT_SUPPORTED,
            "prediction": "CPU: not an Edge TPU operation"} in data["table"]
    code, out, _ = run_cli(capsys, str(models["ok"]), "--json")
    assert code == 0 and json.loads(out)["all_mapped"] is True


def test_unreadable_files_exit_2_with_one_line(
    tmp_path: Path, models: dict[str, Path], capsys
) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n")
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(models["ok"].read_bytes()[:64])
    for path in (text, truncated, tmp_path / "missing.tflite", tmp_path):
        code, out, err = run_cli(capsys, str(path))
        assert code == 2, path
        assert out == ""
        assert len(err.strip().splitlines()) == 1 and str(path) in err
        assert "Traceback" not in err


def test_compiled_model_is_recognised(models: dict[str, Path], tmp_path: Path, capsys) -> None:
    compiled = tmp_path / "ok_edgetpu.tflite"
    compiled.write_bytes(edgetpu_standin.compile_like_edgetpu(models["leaky"].read_bytes()))
    report = ec.check(compiled)
    assert report.compiled and report.edgetpu_custom_ops == 1
    assert [op.op for op in report.ops] == ["CUSTOM", "LEAKY_RELU", "CONV_2D", "MAXIMUM",
                                            "RESIZE_NEAREST_NEIGHBOR", "CONCATENATION",
                                            "QUANTIZE"]
    code, out, _ = run_cli(capsys, str(compiled))
    assert code == 0
    assert "already compiled for the Edge TPU" in out
    assert "1 edgetpu-custom-op(s) run on the Edge TPU, 6 other op(s) run on the CPU" in out
    # --compiled: the prediction against what the (stand-in) compiler did, op by op
    code, out, _ = run_cli(capsys, str(models["leaky"]), "--compiled", str(compiled))
    assert code == 1  # not all mapped, but no disagreement
    assert "the prediction agrees on 10 of 10 ops" in out
    code, _, err = run_cli(capsys, str(models["ok"]), "--compiled", str(compiled))
    assert code == 2 and "not this model's" in err or "matched by name" in err


# --- the compiler report parser -----------------------------------------------------------


def install_standin_compiler(tmp_path: Path, monkeypatch) -> None:
    """`edgetpu_compiler` on PATH = tests/edgetpu_standin.py (writes a compiled model)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "edgetpu_compiler"
    tests = Path(__file__).resolve().parent
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path[:0] = [{str(tests)!r}, {str(tests.parent)!r}]\n"
        "from edgetpu_standin import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_parse_partial_report() -> None:
    report = ecc.parse_report(fixture("leaky_partial.stdout.txt"))
    assert report.version == "16.0.384591198"
    assert report.compiled and not report.failed and not report.all_mapped
    assert (report.subgraphs, report.total_ops, report.tpu_ops, report.cpu_ops) == (1, 10, 4, 6)
    assert report.log_file == "out/leaky_edgetpu.log"
    assert report.output_model == "out/leaky_edgetpu.tflite"
    assert ecc.CompilerRow("LEAKY_RELU", 1, ec.COMPILER_STATUS[ec.NOT_SUPPORTED]) in report.rows
    assert sum(r.count for r in report.rows) == 10
    assert sum(r.count for r in report.rows if r.mapped) == 4


def test_parse_log_file() -> None:
    log = ecc.parse_report(fixture("leaky_partial_edgetpu.log"))
    assert log.version == "16.0.384591198" and log.input_model == "leaky.tflite"
    assert log.compiled and log.tpu_count == 4
    assert log.rows == ecc.parse_report(fixture("leaky_partial.stdout.txt")).rows


def test_parse_all_mapped_report() -> None:
    report = ecc.parse_report(fixture("all_mapped.stdout.txt"))
    assert report.all_mapped and report.cpu_ops is None and report.tpu_count == 6


def test_parse_report_listing_only_unmapped_ops() -> None:
    report = ecc.parse_report(fixture("unmapped_only.stdout.txt"))
    assert report.others_mapped and not report.all_mapped
    assert report.tpu_count == 35
    assert [r.status for r in report.rows] == [ec.COMPILER_STATUS[k]
                                               for k in (ec.VERSION, ec.SUBGRAPH, ec.SUBGRAPH)]
    log = ecc.parse_report(fixture("leaky_partial_edgetpu.log"))
    merged = ecc.merge_reports(report, log)
    assert merged.rows == log.rows and not merged.others_mapped and merged.tpu_ops == 35


@pytest.mark.parametrize(
    "name, message",
    [
        ("parse_failure.stdout.txt", "Model could not be parsed"),
        ("dynamic_failure.stdout.txt", "Compilation failed: Model failed in Tflite interpreter"),
    ],
)
def test_parse_failed_compilations(name: str, message: str) -> None:
    report = ecc.parse_report(fixture(name))
    assert report.failed and not report.all_mapped and not report.rows
    assert any(e.startswith(message) for e in report.errors)


def test_compare_with_static_check(models: dict[str, Path]) -> None:
    static = ec.check(models["leaky"])
    assert ecc.compare(static, ecc.parse_report(fixture("leaky_partial.stdout.txt"))) == []
    other = fixture("leaky_partial.stdout.txt").replace(
        "MAXIMUM                        1          More than one subgraph is not supported",
        "MAXIMUM                        1          Mapped to Edge TPU",
    ).replace("run on Edge TPU: 4", "run on Edge TPU: 5")
    diffs = ecc.compare(static, ecc.parse_report(other))
    assert "MAXIMUM 'Mapped to Edge TPU': predicted 0, compiler 1" in diffs
    assert "ops on the Edge TPU: predicted 4, compiler 5" in diffs


# --- the compile CLI ----------------------------------------------------------------------


def test_compile_without_compiler_exits_2(
    tmp_path: Path, models: dict[str, Path], monkeypatch, capsys
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ecc.main([str(models["ok"])]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "edgetpu_compiler is not installed" in err and "edgetpu-compiler" in err
    assert "apt" in err and "x86-64" in err


def test_compile_without_compiler_says_so_once(
    tmp_path: Path, models: dict[str, Path], monkeypatch, capsys
) -> None:
    """Several models (segments) and no compiler: one line, not one per model."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ecc.main([str(models["ok"]), str(models["ok"]), str(models["ok"])]) == 2
    err = capsys.readouterr().err
    assert err.count("edgetpu_compiler is not installed") == 1
    assert len(err.strip().splitlines()) == 1


def fake_compiler(
    tmp_path: Path, monkeypatch, stdout: str, log: str | None, exit_code: int = 0
) -> None:
    """Put a stand-in `edgetpu_compiler` first on PATH that replays fixture files (for
    failed compilations, which write no model)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "edgetpu_compiler"
    script.write_text(
        "#!/bin/sh\n"
        "# called as: edgetpu_compiler -s -o DIR MODEL\n"
        'stem=$(basename "$4" .tflite)\n'
        'cat "$FAKE_STDOUT"\n'
        'if [ -n "$FAKE_LOG" ]; then cp "$FAKE_LOG" "$3/${stem}_edgetpu.log"; fi\n'
        'exit "$FAKE_EXIT"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("FAKE_STDOUT", str(FIXTURES / stdout))
    monkeypatch.setenv("FAKE_LOG", str(FIXTURES / log) if log else "")
    monkeypatch.setenv("FAKE_EXIT", str(exit_code))


def test_compile_cli_partial_mapping(
    tmp_path: Path, models: dict[str, Path], monkeypatch, capsys
) -> None:
    install_standin_compiler(tmp_path, monkeypatch)
    out_dir = tmp_path / "out"
    assert ecc.main([str(models["leaky"]), "-o", str(out_dir)]) == 1
    out = capsys.readouterr().out
    assert (out_dir / "leaky_edgetpu.log").is_file()
    assert "LEAKY_RELU                     1          Operation not supported" in out
    assert "The prediction agrees with the compiler on all 10 ops." in out
    assert "edgetpu_compiler: 4 of 10 operations will run on the Edge TPU" in out


def test_compile_cli_all_mapped(
    tmp_path: Path, models: dict[str, Path], monkeypatch, capsys
) -> None:
    install_standin_compiler(tmp_path, monkeypatch)
    assert ecc.main([str(models["ok"]), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "The prediction agrees with the compiler on all 6 ops." in out
    assert "edgetpu_compiler: 6 of 6 operations will run on the Edge TPU" in out
    assert "On-chip memory used for caching model parameters: 0.00MiB" in out


def test_compile_cli_failed_compilation(
    tmp_path: Path, models: dict[str, Path], monkeypatch, capsys
) -> None:
    fake_compiler(tmp_path, monkeypatch, "dynamic_failure.stdout.txt", None, exit_code=1)
    assert ecc.main([str(models["ok"]), "-o", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "compilation failed: Compilation failed: Model failed in Tflite" in captured.err
    assert "the prediction was that every op maps, but the compiler failed" in captured.out
