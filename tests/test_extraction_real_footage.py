"""The classic tracker on real footage: the exact-mask test set cut from bigbuckbunny frames, and the bunny itself."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mvideo_core.extraction import ClassicTracker
from mvideo_core.extraction.base import LOST_BELOW_SCORE, TRACKED_MIN_SCORE, frame_state, state_report
from mvideo_core.extraction.real_footage import CLIPS, SOURCE_SIZE, load_source_frames, make_clip


@pytest.fixture(scope="module")
def source():
    """bigbuckbunny's 132 frames at 360x640 (decoded once for the module)."""
    frames = load_source_frames()
    assert frames.shape == (132, *SOURCE_SIZE, 3)
    return frames


def _box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def _track(video, gt) -> tuple:
    tracker = ClassicTracker()
    session = tracker.start(video.frames, video.fps)
    tracker.add_prompt(session, 1, 0, box=_box(gt.masks[0, 0]))
    return tracker.propagate(session, show_progress=False)


def test_clips_render_exact_masks_the_same_way_every_time(source):
    video, gt = make_clip("rock_behind_tree", source, size=(90, 160), num_frames=12)
    again, gt_again = make_clip("rock_behind_tree", source, size=(90, 160), num_frames=12)
    np.testing.assert_array_equal(video.frames, again.frames)
    np.testing.assert_array_equal(gt.masks, gt_again.masks)
    area = gt.masks[0].reshape(12, -1).sum(1)
    assert area.min() < 0.7 * area.max()  # the subject really passes behind the foreground
    # the subject is drawn where its mask says: inside it the frame differs from the bare background
    bare = cv2.resize(source[30], (160, 90), interpolation=cv2.INTER_AREA)
    assert np.abs(video.frames[0].astype(int) - bare).sum(-1)[gt.masks[0, 0]].mean() > 20


def test_classic_tracker_holds_on_the_real_footage_set_from_one_box(source):
    """Issue 21's target: mean IoU >= 0.85 over the set from one box on frame 0 (measured 0.935: 0.96-0.99 on the
    moving, scaling, turning and occluded subjects, 0.98 on the one leaving the picture, 0.62 on the one fully hidden
    behind a foreground holding its own colours)."""
    scores = {}
    for name in CLIPS:
        video, gt = make_clip(name, source)
        result = _track(video, gt)
        scores[name] = np.mean([_iou(result.masks[0, t], gt.masks[0, t]) for t in range(gt.num_frames)])
    assert np.mean(list(scores.values())) >= 0.85, scores
    assert sorted(v for v in scores.values())[1] >= 0.9, scores  # all but the hardest clip track well


def test_a_subject_that_leaves_the_picture_is_reported_lost_with_an_empty_mask(source):
    video, gt = make_clip("fur_leaves_the_frame", source)
    result = _track(video, gt)
    states = result.meta["frame_states"][0]["frames"]
    gone = [t for t in range(gt.num_frames) if not gt.masks[0, t].any()]
    assert len(gone) >= 8
    assert all(states[t]["state"] == "lost" and not result.masks[0, t].any() for t in gone[1:])
    in_view = [t for t in range(1, gt.num_frames) if gt.masks[0, t].sum() > 0.8 * gt.masks[0, 0].sum()]
    assert all(states[t]["state"] == "tracked" for t in in_view)


def test_a_subject_hidden_for_frames_is_never_called_tracked_while_hidden_and_is_found_again(source):
    video, gt = make_clip("rock_fully_hidden", source)
    result = _track(video, gt)
    states = result.meta["frame_states"][0]["frames"]
    hidden = [t for t in range(gt.num_frames) if not gt.masks[0, t].any()]
    assert hidden and all(states[t]["state"] in ("lost", "uncertain") for t in hidden)
    back = [t for t in range(hidden[-1] + 4, gt.num_frames)]
    assert np.mean([_iou(result.masks[0, t], gt.masks[0, t]) for t in back]) > 0.85
    assert all(states[t]["state"] == "tracked" for t in back)


# (x, y) at 640x360 of points on the bunny's body, read off the frames by eye
BUNNY_POINTS = {0: (180, 215), 10: (200, 200), 20: (210, 200), 30: (200, 200), 45: (230, 220), 60: (220, 220),
                80: (220, 220), 100: (220, 220), 131: (230, 220)}  # fmt: skip
BACKGROUND_POINTS = [(600, 40), (560, 180), (500, 330)]  # sky, the rock on the right, grass


def test_the_bunny_from_the_frame_0_box_is_followed_and_every_collapse_is_reported(source):
    """Issue 21: the box around the bunny in its burrow (222,250,528,562 at 1280x720). The mask used to be empty from
    frame ~8 on while the studio said 'tracked'. Now: the bunny's body is inside the mask on the labelled frames,
    the background is never, and any frame whose mask collapses (under 35% of the prompt mask, or off the body) is
    `uncertain` or `lost`."""
    result = _track_bunny(source)
    states = result.meta["frame_states"][0]["frames"]
    masks = result.masks[0]
    area = masks.reshape(len(masks), -1).sum(1)
    for t in range(len(masks)):
        collapsed = area[t] < 0.35 * area[0] or (t in BUNNY_POINTS and not masks[t][BUNNY_POINTS[t][::-1]])
        if collapsed:
            assert states[t]["state"] in ("uncertain", "lost"), (t, states[t])
    assert sum(masks[t][y, x] for t, (x, y) in BUNNY_POINTS.items()) >= 8
    assert not any(masks[:, y, x].any() for x, y in BACKGROUND_POINTS)
    assert np.mean([s["state"] in ("prompted", "tracked") for s in states]) >= 0.9


def _track_bunny(source):
    tracker = ClassicTracker()
    session = tracker.start(source, 25.0)
    tracker.add_prompt(session, 1, 0, box=[111, 125, 264, 281])  # the box, at 640x360
    return tracker.propagate(session, show_progress=False)


def test_frame_states_follow_the_score_and_an_empty_mask_is_never_tracked():
    assert frame_state(1.0, empty=False) == "tracked"
    assert frame_state(TRACKED_MIN_SCORE - 0.01, empty=False) == "uncertain"
    assert frame_state(LOST_BELOW_SCORE - 0.01, empty=False) == "lost"
    assert frame_state(1.0, empty=True) == "lost"
    assert frame_state(float("nan"), empty=False) == "lost"
    assert frame_state(0.0, empty=True, prompted=True) == "prompted"
    frames = [{"frame": t, "state": s, "score": 0.0} for t, s in enumerate("pttllluut")]
    frames = [
        dict(f, state={"p": "prompted", "t": "tracked", "l": "lost", "u": "uncertain"}[f["state"]]) for f in frames
    ]
    assert state_report("bunny", frames) == [
        "bunny: lost on frames 3-5: add a click there",
        "bunny: uncertain on frames 6-7: check them, add a click where wrong",
    ]
