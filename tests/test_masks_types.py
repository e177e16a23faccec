import numpy as np
import pytest

from mvideo_core.masks import MaskError, MaskSequence, MaskSet


def test_union_is_any_object():
    masks = np.zeros((2, 3, 4, 5), dtype=bool)
    masks[0, :, 0, 0] = True
    masks[1, :, 1, 1] = True
    union = MaskSet(masks, fps=8).union()
    assert union.shape == (3, 4, 5)
    assert union[:, 0, 0].all() and union[:, 1, 1].all() and union.sum() == 6


def test_ids_default_from_one_and_colours_distinct():
    ms = MaskSet(np.zeros((3, 1, 2, 2), dtype=bool), fps=8)
    assert ms.ids == [1, 2, 3]
    assert len({tuple(c) for c in ms.colors()}) == 3


def test_float_masks_rejected_with_advice():
    with pytest.raises(MaskError, match="threshold"):
        MaskSequence(np.zeros((1, 2, 2), dtype=np.float32), fps=8)


def test_wrong_ndim_names_expected_shape():
    with pytest.raises(MaskError, match=r"\[K, T, H, W\]"):
        MaskSet(np.zeros((2, 2, 2), dtype=bool), fps=8)


def test_label_map_round_trip_without_overlap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(3, 8, 9)).astype(np.uint16)
    ms = MaskSet.from_label_map(labels, fps=12.5)
    np.testing.assert_array_equal(ms.label_map(), labels)


def test_size_mismatch_with_video_is_explained():
    ms = MaskSet(np.zeros((1, 4, 8, 8), dtype=bool), fps=8)
    with pytest.raises(MaskError, match="resize the masks"):
        ms.check_matches_video(4, 16, 16)
