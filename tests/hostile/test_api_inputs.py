"""Hostile arguments to the Python API entry points beside the loaders (extract_masks, score_clip): each refused
with the library's own error naming what is wrong, never a raw AttributeError / numpy / OpenCV error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mvideo_core.extraction import ExtractionError
from mvideo_core.extraction.api import BoxPrompt, ClickPrompt, extract_masks, load_tracker
from mvideo_core.masks import MaskSet
from mvideo_core.metrics import MetricError, score_clip
from mvideo_core.video_io import VideoError

pytestmark = pytest.mark.bad_input

FRAMES = np.zeros((4, 24, 32, 3), np.uint8)
FRAMES[:, 5:15, 5:15] = 200
BOX = ["0,0,10,10@0"]

EXTRACT = {
    "frames-float": ({"video": FRAMES.astype(np.float32), "boxes": BOX}, "uint8"),
    "frames-list": ({"video": [[1]], "boxes": BOX}, "numpy array"),
    "frames-one-image": ({"video": FRAMES[0], "boxes": BOX}, "[T, H, W, 3]"),
    "frames-empty": ({"video": FRAMES[:0], "boxes": BOX}, "empty"),
    "fps-nan": ({"video": FRAMES, "fps": math.nan, "boxes": BOX}, "fps"),
    "fps-negative": ({"video": FRAMES, "fps": -1, "boxes": BOX}, "fps"),
    "nothing-to-segment": ({"video": FRAMES}, "nothing to segment"),
    "box-frame-past-the-end": ({"video": FRAMES, "boxes": ["0,0,10,10@99"]}, "frame 99"),
    "box-inverted": ({"video": FRAMES, "boxes": ["10,10,0,0@0"]}, "negative area"),
    "box-outside": ({"video": FRAMES, "boxes": ["100,100,200,200@0"]}, "outside"),
    "box-tuple": ({"video": FRAMES, "boxes": [(0, 0, 5, 5)]}, "BoxPrompt"),
    "box-object": ({"video": FRAMES, "boxes": [object()]}, "BoxPrompt"),
    "box-nan": ({"video": FRAMES, "boxes": [BoxPrompt((math.nan, 0, 5, 5))]}, "finite"),
    "box-inf": ({"video": FRAMES, "boxes": [BoxPrompt((0, 0, math.inf, 5))]}, "finite"),
    "box-frame-fraction": ({"video": FRAMES, "boxes": [BoxPrompt((0, 0, 5, 5), frame=1.5)]}, "frame 1.5"),
    "box-frame-negative": ({"video": FRAMES, "boxes": [BoxPrompt((0, 0, 5, 5), frame=-1)]}, "frame -1"),
    "box-object-id-negative": ({"video": FRAMES, "boxes": [BoxPrompt((0, 0, 5, 5), obj_id=-4)]}, "starting at 1"),
    "click-outside": ({"video": FRAMES, "clicks": ["500,500,+@0"]}, "outside"),
    "click-nan": ({"video": FRAMES, "clicks": [ClickPrompt(math.nan, 3)]}, "click"),
    "click-dict": ({"video": FRAMES, "clicks": [{"x": 1, "y": 2}]}, "ClickPrompt"),
    "text-without-grounder": ({"video": FRAMES, "text": "dog"}, "grounding dino"),
}


@pytest.fixture(scope="module")
def tracker():
    return load_tracker("classic")


@pytest.mark.parametrize("kwargs, words", list(EXTRACT.values()), ids=list(EXTRACT))
def test_extract_masks_bad_argument_is_refused(tracker, kwargs, words):
    kwargs = dict(kwargs)
    with pytest.raises(ExtractionError) as info:
        extract_masks(kwargs.pop("video"), tracker=tracker, show_progress=False, **kwargs)
    assert words.lower() in str(info.value).lower(), info.value


@pytest.mark.parametrize("path, words", [("/nonexistent/clip.mp4", "no such video"), ("/proc", "is a folder")])
def test_extract_masks_from_a_bad_path_is_refused(tracker, path, words):
    with pytest.raises(VideoError, match=words):
        extract_masks(path, tracker=tracker, boxes=BOX, show_progress=False)


SCORE = {
    "masks-float": (lambda t: score_clip(FRAMES, np.ones((4, 24, 32)), t), "threshold"),
    "masks-short": (lambda t: score_clip(FRAMES, MaskSet(np.ones((1, 2, 24, 32), bool), 8.0), t), "cover 2 frames"),
    "masks-2d": (lambda t: score_clip(FRAMES, np.ones((24, 32), bool), t), "conditioning masks"),
    "frames-float": (lambda t: score_clip(FRAMES / 255, MaskSet(np.ones((1, 4, 24, 32), bool), 8.0), t), "uint8"),
    "fps-nan": (lambda t: score_clip(FRAMES, MaskSet(np.ones((1, 4, 24, 32), bool), 8.0), t, fps=math.nan), "fps"),
}


@pytest.mark.parametrize("call, words", list(SCORE.values()), ids=list(SCORE))
def test_score_clip_bad_argument_is_refused(tracker, call, words):
    with pytest.raises((MetricError, VideoError, ExtractionError)) as info:
        call(tracker)
    assert words.lower() in str(info.value).lower(), info.value
