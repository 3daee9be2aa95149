"""Annotated images: every detection keeps a readable label, even when several share a box
(dog.jpg: car 0.67 and truck 0.51 on the same vehicle)."""
from __future__ import annotations

import cv2
import numpy as np

from conftest import SAMPLES
from yolo_tpu.detections import Detections
from yolo_tpu.draw import class_colour, draw_detections

CAR, TRUCK = 2, 7
VEHICLE = [466, 78, 687, 170]  # dog.jpg's car / truck, as the demo model reports it


def dets(*rows) -> Detections:
    boxes = np.array([r[0] for r in rows], np.float32)
    return Detections.from_arrays(boxes, np.array([r[1] for r in rows], np.float32),
                                  np.array([r[2] for r in rows], np.int32),
                                  names=("person", "bicycle", "car", "motorbike", "aeroplane",
                                         "bus", "train", "truck"))


def label_pixels(image: np.ndarray, class_id: int) -> int:
    """Pixels of the class colour outside every box outline: its label patch."""
    mask = np.all(image == class_colour(class_id), axis=2)
    x1, y1, x2, y2 = VEHICLE
    mask[y1 - 4:y1 + 5, x1 - 4:x2 + 5] = False  # top edge
    mask[y2 - 4:y2 + 5, x1 - 4:x2 + 5] = False  # bottom edge
    mask[y1 - 4:y2 + 5, x1 - 4:x1 + 5] = False  # left edge
    mask[y1 - 4:y2 + 5, x2 - 4:x2 + 5] = False  # right edge
    return int(mask.sum())


def test_labels_sharing_a_box_are_all_visible():
    image = cv2.imread(str(SAMPLES / "dog.jpg"))
    car_alone = draw_detections(image, dets((VEHICLE, 0.67, CAR)))
    both = draw_detections(image, dets((VEHICLE, 0.67, CAR), (VEHICLE, 0.51, TRUCK)))
    car_patch = label_pixels(car_alone, CAR)
    assert car_patch > 300  # the label: text plus fill, a few hundred pixels
    # The higher score's label is exactly where it was alone; the truck's is beside it.
    changed = np.any(car_alone != both, axis=2)
    ys, xs = np.nonzero(np.all(car_alone == class_colour(CAR), axis=2))
    above = ys < VEHICLE[1] - 3  # the label above the box, clear of its outline
    region = (slice(ys[above].min(), ys[above].max() + 1),
              slice(xs[above].min(), xs[above].max() + 1))
    assert region[0].stop - region[0].start > 10 and region[1].stop - region[1].start > 50
    assert not changed[region].any(), "the truck's label covers the car's"
    assert label_pixels(both, TRUCK) >= 0.8 * car_patch


def test_labels_are_visible_whatever_the_order_given():
    """The lower score listed first: the higher one's label still wins its place."""
    image = np.full((300, 400, 3), 90, np.uint8)
    box = [100, 120, 300, 250]
    a = draw_detections(image, dets((box, 0.4, TRUCK), (box, 0.9, CAR)))
    b = draw_detections(image, dets((box, 0.9, CAR), (box, 0.4, TRUCK)))
    assert np.array_equal(a, b)
    for cls in (CAR, TRUCK):
        assert np.all(a == class_colour(cls), axis=2).sum() > 300


def test_label_stack_stays_inside_the_image():
    image = np.full((60, 200, 3), 90, np.uint8)
    box = [10, 2, 190, 58]  # no room above: labels go inside, stacked down
    out = draw_detections(image, dets(*[(box, 0.9 - i * 0.1, i) for i in range(6)]))
    assert out.shape == image.shape
    assert np.all(out[:, :, :] == class_colour(0), axis=2).sum() > 100
