"""Sam2Tracker (transformers) and the sam2-package backend with tiny random weights; weight discovery + fallback."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mvideo_core.extraction import (
    CancelToken,
    ClassicTracker,
    ExtractionCancelled,
    ExtractionError,
    WeightsNotFound,
    find_checkpoint,
    load_tracker,
)
from mvideo_core.extraction.sam2_tracker import Sam2Tracker, save_random_sam2

# tiny models on a shared 2-core machine: more threads only contend (measured 20x slower with 2)
pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_sam2(tmp_path_factory):
    return save_random_sam2(tmp_path_factory.mktemp("sam2") / "sam2.1-hiera-tiny")


@pytest.fixture(scope="module")
def video():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (12, 60, 96, 3), dtype=np.uint8)


def _steps(tracker, session, **kwargs):
    totals = []
    result = tracker.propagate(session, progress=lambda d, t, w: totals.append(t), show_progress=False, **kwargs)
    return result, (totals[-1] if totals else 0)


def test_loads_from_a_folder_and_tracks_boxes_clicks_and_late_objects(tiny_sam2, video):
    tracker = load_tracker(sam2=str(tiny_sam2), device="cpu")
    assert isinstance(tracker, Sam2Tracker)
    session = tracker.start(video, 8.0)
    first = tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40], name="person")
    assert first.shape == (60, 96) and first.dtype == bool
    tracker.add_prompt(session, 3, 7, points=[[70, 30], [10, 10]], labels=[1, 0], name="dog")  # enters late
    result, steps = _steps(tracker, session)
    assert steps == 11 + 7  # forward 0 -> 11 (object 3 joins at 7, sharing those frames), backward 7 -> 0
    assert result.masks.shape == (2, 12, 60, 96) and result.masks.dtype == bool
    assert result.ids == [1, 3] and result.names == ["person", "dog"]
    assert result.meta["tracker"].startswith("sam2") and result.meta["prompt_frames"] == {"1": [0], "3": [7]}
    np.testing.assert_array_equal(result.masks[0, 0], first)


def test_refinement_repropagates_only_its_frames_and_is_kept_as_a_prompt(tiny_sam2, video):
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video, 8.0)
    tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40])
    _steps(tracker, session)
    tracker.add_prompt(session, 1, 8, points=[[20, 20]], labels=[0])
    _, steps = _steps(tracker, session)
    assert steps == (8 - 5) + (11 - 8)  # frames 5..11 are nearer frame 8 than frame 0
    sess = session.engine["sam2"]
    assert 8 in sess.output_dict_per_obj[0]["cond_frame_outputs"]  # the refined frame conditions later frames


def test_memory_stays_bounded_on_a_long_video(tiny_sam2):
    frames = np.random.default_rng(1).integers(0, 255, (40, 32, 48, 3), dtype=np.uint8)
    tracker = Sam2Tracker(tiny_sam2, device="cpu", memory_window=8)
    session = tracker.start(frames, 8.0)
    tracker.add_prompt(session, 1, 0, box=[2, 2, 30, 20])
    tracker.propagate(session, show_progress=False)
    sess = session.engine["sam2"]
    outputs = sess.output_dict_per_obj[0]
    assert len(outputs["non_cond_frame_outputs"]) <= 9
    assert all("high_res_masks" not in out for out in outputs["non_cond_frame_outputs"].values())
    assert len(sess.processed_frames._cache) <= 2  # frames are prepared one at a time, not all up front


def test_cancel_and_remove_object(tiny_sam2, video):
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video, 8.0)
    tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40])
    tracker.add_prompt(session, 2, 0, box=[50, 20, 90, 58])
    token = CancelToken()
    token.cancel()
    with pytest.raises(ExtractionCancelled) as info:
        tracker.propagate(session, cancel=token, show_progress=False)
    assert info.value.partial.ids == [1, 2]
    tracker.remove_object(session, 1)
    result, steps = _steps(tracker, session)
    assert result.ids == [2] and steps == 11
    assert session.engine["sam2"].obj_ids == [2]


def test_one_frame_video(tiny_sam2, video):
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video[:1], 8.0)
    tracker.add_prompt(session, 1, 0, points=[[30, 30]])
    assert tracker.propagate(session, show_progress=False).masks.shape == (1, 1, 60, 96)


def test_discovery_in_models_dir_and_hf_cache(tiny_sam2, tmp_path):
    found = find_checkpoint(None, ("facebook/sam2.1-hiera-tiny",), models_dir=tiny_sam2.parent)
    assert found.how == "models dir" and found.path == str(tiny_sam2)
    assert isinstance(load_tracker("auto", models_dir=tiny_sam2.parent, device="cpu"), Sam2Tracker)
    # a hub-cache layout: models--owner--name/snapshots/<rev>/ + refs/main
    repo = tmp_path / "hub" / "models--facebook--sam2.1-hiera-small"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for f in tiny_sam2.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    found = find_checkpoint(None, ("facebook/sam2.1-hiera-small",), cache_dir=tmp_path / "hub")
    assert found.how == "hf cache" and found.path.endswith("abc123")


def test_missing_weights_fall_back_to_classic_and_say_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    messages = []
    monkeypatch.setattr("mvideo_core.extraction.discovery.in_hf_cache", lambda *a, **k: None)
    tracker = load_tracker("auto", models_dir=tmp_path, on_fallback=messages.append)
    assert isinstance(tracker, ClassicTracker)
    assert "facebook/sam2.1-hiera-tiny" in messages[0] and "--sam2" in messages[0] and "--models-dir" in messages[0]
    session = tracker.start(np.zeros((2, 16, 16, 3), np.uint8), 8.0)
    tracker.add_prompt(session, 1, 0, box=[2, 2, 10, 10])
    assert "facebook/sam2.1-hiera-tiny" in tracker.result(session).meta["tracker_status"]
    with pytest.raises(WeightsNotFound, match="--sam2"):
        load_tracker("sam2", models_dir=tmp_path)


def test_a_folder_without_a_checkpoint_is_explained(tmp_path):
    with pytest.raises(WeightsNotFound, match="holds no transformers checkpoint"):
        load_tracker(sam2=str(tmp_path))
    with pytest.raises(WeightsNotFound, match="not a hub id"):
        load_tracker(sam2="no/such/place")


def test_sam2_package_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    from mvideo_core.extraction.sam2_pkg_tracker import import_sam2_package

    with pytest.raises(ExtractionError, match="install sam2 and torchvision to use Meta .pt checkpoints"):
        import_sam2_package()
    with pytest.raises(ExtractionError, match="install sam2 and torchvision"):
        load_tracker(sam2="weights/sam2.1_hiera_tiny.pt")


def test_sam2_package_backend_with_random_weights(video):
    pytest.importorskip("hydra", reason="the optional sam2 package backend is not installed")
    pytest.importorskip("sam2.build_sam", reason="the optional sam2 package backend is not installed")
    from mvideo_core.extraction.sam2_pkg_tracker import Sam2PackageTracker

    overrides = [
        "++model.image_size=256",
        "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]",
        "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]",
    ]
    tracker = Sam2PackageTracker(None, "configs/sam2.1/sam2.1_hiera_t.yaml", device="cpu", overrides=overrides)
    session = tracker.start(video[:3], 8.0)
    assert tracker.add_prompt(session, 1, 1, box=[5, 5, 50, 40]).shape == (60, 96)
    result, steps = _steps(tracker, session)
    assert steps == 2 and result.masks.shape == (1, 3, 60, 96)


# -- sessions that never crash ----------------------------------------------------------------------------------
OPS_FRAMES, OPS_H, OPS_W = 5, 24, 32


@pytest.fixture(scope="module")
def ops_tracker(tmp_path_factory):
    return Sam2Tracker(save_random_sam2(tmp_path_factory.mktemp("sam2ops") / "sam2", image_size=64), device="cpu")


def _box_strategy():
    corner = st.tuples(st.integers(0, OPS_W - 2), st.integers(0, OPS_H - 2))
    size = st.tuples(st.integers(2, OPS_W), st.integers(2, OPS_H))
    return st.builds(lambda c, s: [c[0], c[1], min(c[0] + s[0], OPS_W), min(c[1] + s[1], OPS_H)], corner, size)


_OBJ, _FRAME, _CLICK = st.integers(1, 2), st.integers(0, OPS_FRAMES - 1), st.integers(0, 1)
_POINT = st.tuples(st.integers(0, OPS_W - 1), st.integers(0, OPS_H - 1))
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("box"), _OBJ, _FRAME, _box_strategy()),
        # clicks come in bursts on one frame, as a user refines a frame in the studio
        st.tuples(st.just("clicks"), _OBJ, _FRAME, st.lists(st.tuples(_POINT, _CLICK), min_size=1, max_size=3)),
        st.tuples(st.just("propagate"), st.sampled_from([None, False, True])),
        st.tuples(st.just("remove"), _OBJ),
    ),
    min_size=1,
    max_size=6,
)
# most sequences start from an object already tracked through the video (box on frame 0, propagate)
_TRACKED = [("box", 1, 0, [4, 4, 20, 16]), ("propagate", None)]
_START = st.sampled_from([[], _TRACKED, _TRACKED])


@settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(start=_START, ops=_OPS)
def test_any_sequence_of_prompts_propagations_and_removals_works(ops_tracker, start, ops):
    """Boxes and clicks on any frames (repeated on one frame, after propagating: what the studio does), propagations
    one way or both, deletions and re-prompts: only invalid requests fail, each with an ExtractionError, and the
    session keeps working after any of them."""
    tracker = ops_tracker
    frames = np.random.default_rng(0).integers(0, 255, (OPS_FRAMES, OPS_H, OPS_W, 3), dtype=np.uint8)
    session = tracker.start(frames, 8.0)
    for op in [*start, *ops, ("propagate", None)]:
        kind, *args = op
        if kind == "box":
            obj_id, frame_idx, box = args
            mask = tracker.add_prompt(session, obj_id, frame_idx, box=box)
            assert mask.shape == (OPS_H, OPS_W)
        elif kind == "clicks":
            obj_id, frame_idx, clicks = args
            for (x, y), label in clicks:
                if label == 0 and obj_id not in session.objects:
                    with pytest.raises(ExtractionError, match="positive click"):
                        tracker.add_prompt(session, obj_id, frame_idx, points=[[x, y]], labels=[label])
                    continue
                tracker.add_prompt(session, obj_id, frame_idx, points=[[x, y]], labels=[label])
        elif kind == "propagate":
            result = tracker.propagate(session, reverse=args[0], show_progress=False)
            assert result.masks.shape == (len(session.objects), OPS_FRAMES, OPS_H, OPS_W)
            assert result.ids == sorted(session.objects)
        else:
            if args[0] not in session.objects:
                with pytest.raises(ExtractionError, match="no object"):
                    tracker.remove_object(session, args[0])
                continue
            tracker.remove_object(session, args[0])
            assert args[0] not in tracker.result(session).ids
    # after the final two-way propagation every object has a mask (maybe empty) on every frame and nothing is pending
    for obj in session.objects.values():
        assert obj.done.all() and not obj.pending


def test_include_then_exclude_click_on_a_tracked_frame_then_propagate(tiny_sam2, video):
    """The studio's refinement: box on frame 0, propagate, + and - clicks on one later frame, propagate (this raised
    KeyError 'maskmem_features', and every later propagate of the session failed the same way)."""
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video, 8.0)
    tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40])
    tracker.propagate(session, show_progress=False)
    tracker.add_prompt(session, 1, 6, points=[[20, 20]], labels=[1])
    tracker.add_prompt(session, 1, 6, points=[[40, 30]], labels=[0])
    tracker.propagate(session, show_progress=False)
    tracker.add_prompt(session, 1, 9, points=[[30, 30]], labels=[1])
    result = tracker.propagate(session, show_progress=False)
    out = session.engine["sam2"].output_dict_per_obj[0]["cond_frame_outputs"]
    assert sorted(out) == [0, 6, 9] and all("maskmem_features" in o for o in out.values())
    assert result.meta["prompt_frames"] == {"1": [0, 6, 9]}


def test_an_engine_failure_is_an_extraction_error_and_the_session_recovers(tiny_sam2, video, monkeypatch):
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video[:6], 8.0)
    tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40])
    forward = type(tracker.model).forward
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(kwargs.get("frame_idx"))
        if len(calls) == 3:
            raise RuntimeError("out of memory (injected)")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(tracker.model), "forward", failing)
    with pytest.raises(ExtractionError, match="out of memory \\(injected\\).*propagate again"):
        tracker.propagate(session, show_progress=False)
    result = tracker.propagate(session, show_progress=False)
    assert result.masks.shape == (1, 6, 60, 96) and session.objects[1].done.all()


def test_frame_states_use_the_object_score_and_a_collapse_is_never_tracked(tiny_sam2, video, monkeypatch):
    """SAM2's state per frame: its object score (sigmoid of the object-score logit), capped when the mask shrinks
    under 35% of the prompt frame's; an empty mask is lost."""
    tracker = Sam2Tracker(tiny_sam2, device="cpu")
    session = tracker.start(video[:6], 8.0)
    prompt_mask = tracker.add_prompt(session, 1, 0, box=[5, 5, 50, 40])
    masks_from = Sam2Tracker._masks_from
    shrink = {3: 0.2, 4: 0.0}  # frames whose mask collapses to this fraction of the prompt mask

    def collapsing(self, session, pred_masks, obj_idx):
        mask = masks_from(self, session, pred_masks, obj_idx)
        frame = len([t for t in range(6) if session.objects[1].done[t]])  # the frame being filled
        if frame in shrink:
            mask = np.zeros_like(mask)
            ys, xs = np.nonzero(prompt_mask)
            keep = int(len(ys) * shrink[frame])
            mask[ys[:keep], xs[:keep]] = True
        return mask

    monkeypatch.setattr(Sam2Tracker, "_masks_from", collapsing)
    result = tracker.propagate(session, show_progress=False)
    frames = result.meta["frame_states"][0]["frames"]
    assert [f["frame"] for f in frames] == list(range(6)) and frames[0]["state"] == "prompted"
    assert frames[3]["state"] in ("uncertain", "lost") and frames[3]["score"] <= 0.2 / 0.35 + 1e-3
    assert frames[4]["state"] == "lost" and frames[4]["score"] == 0.0
