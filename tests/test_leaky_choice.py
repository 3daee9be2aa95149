"""`--leaky auto`'s bookkeeping: which photos the forms are scored on, and which form wins.
The choice itself on real trained models is in test_realmodels (custom10 -> prelu, the
others addrelu) and on the bundled model in test_convert_cli (addrelu, no second form)."""
from __future__ import annotations

from converters.accuracy import Fidelity
from converters.leaky_choice import MAX_IMAGES, Trial, better, choice_images


def trial(form: str, map50: float, matched: int, reference: int = 30) -> Trial:
    f = Fidelity((), reference, matched, matched, map50, 0)
    return Trial(form, None, None, b"", f)


def test_photos_are_the_users_calibration_and_held_out_ones_without_videos():
    calib = ["/d/b.png", "/d/a.JPG", "/d/clip.mp4"]
    assert choice_images(calib, ["/d/c.png", "/d/a.JPG"]) == ["/d/a.JPG", "/d/b.png", "/d/c.png"]


def test_many_photos_are_spread_over_the_whole_set():
    photos = [f"/d/{i:04d}.jpg" for i in range(1000)]
    chosen = choice_images(photos[::-1], [])
    assert len(chosen) == MAX_IMAGES and chosen == sorted(set(chosen))
    assert chosen[0] == photos[0] and chosen[-1] >= photos[950]  # not just the first 40


def test_a_later_form_wins_only_by_keeping_strictly_more():
    addrelu = trial("addrelu", 0.938, 28)
    assert better(addrelu, trial("prelu", 0.998, 28))
    assert not better(addrelu, trial("prelu", 0.900, 28))
    assert not better(addrelu, trial("prelu", 0.938, 28))  # a tie keeps the preferred form
    assert better(addrelu, trial("prelu", 0.938, 29))  # same mAP: F1 decides
