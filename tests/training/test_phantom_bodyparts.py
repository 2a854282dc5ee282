"""Radiograph phantoms of other body parts: deterministic, distinct, and radiograph-like (bone over air)."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.phantom_bodyparts import BODY_PARTS, BodyPartError, render_body_part


def test_same_seed_same_pixels_and_each_part_is_its_own_picture() -> None:
    images = {part: render_body_part(part, seed=1, size=128) for part in BODY_PARTS}
    for part, image in images.items():
        assert image.shape == (128, 128) and image.dtype == np.uint8
        assert np.array_equal(image, render_body_part(part, seed=1, size=128))
        assert not np.array_equal(image, render_body_part(part, seed=2, size=128))
        # bone far brighter than air or soft tissue: a radiograph's range, not a flat field
        assert np.percentile(image, 99) - np.percentile(image, 5) > 100, part
    means = [float(images[p].mean()) for p in BODY_PARTS]
    assert len({round(m) for m in means}) == len(BODY_PARTS)  # four different pictures
    seed = np.random.SeedSequence(5)
    assert np.array_equal(
        render_body_part("hand", seed=seed, size=64), render_body_part("hand", seed=seed, size=64)
    )


def test_an_unknown_part_or_a_tiny_size_is_refused_by_name() -> None:
    with pytest.raises(BodyPartError, match="'foot'.*expected one of"):
        render_body_part("foot")
    with pytest.raises(BodyPartError, match="size=8"):
        render_body_part("knee", size=8)
