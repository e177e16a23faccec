"""Grounding DINO (tiny random weights through the real loader), text queries, the API and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mvideo_core import extract
from mvideo_core.extraction import (
    COCO_CLASSES,
    Detections,
    ExtractionError,
    GroundingSettings,
    WeightsNotFound,
    extract_masks,
    load_grounder,
    parse_box,
    parse_click,
    parse_phrases,
)
from mvideo_core.extraction.grounding import save_random_grounding_dino
from mvideo_core.masks import load_masks
from mvideo_core.samples import make_sample

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tiny_gdino(tmp_path_factory):
    return save_random_grounding_dino(tmp_path_factory.mktemp("gdino") / "grounding-dino-tiny")


@pytest.fixture(scope="module")
def sample():
    return make_sample("shapes", size=(96, 144), num_frames=9)


class FixedGrounder:
    """A Grounder that 'finds' the ground-truth box of each named object on any frame (tests the plumbing)."""

    settings = GroundingSettings()

    def __init__(self, gt):
        self.gt = gt

    def detect(self, frame, phrases, frame_idx=0):
        boxes, labels = [], []
        for phrase in parse_phrases(phrases):
            if phrase in self.gt.names:
                ys, xs = np.nonzero(self.gt.masks[self.gt.names.index(phrase), frame_idx])
                if len(ys):
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    labels.append(phrase)
        return Detections(np.array(boxes).reshape(-1, 4), np.ones(len(labels)), labels, frame_idx)


def test_coco_classes_are_the_80_names():
    assert len(COCO_CLASSES) == 80 == len(set(COCO_CLASSES))
    assert COCO_CLASSES[0] == "person" and COCO_CLASSES[-1] == "toothbrush"


def test_tiny_grounding_dino_loads_and_detects(tiny_gdino, sample):
    grounder = load_grounder(str(tiny_gdino), settings=GroundingSettings(0.0, 0.0), device="cpu")
    frame = sample[0].frames[3]
    found = grounder.detect(frame, "ball . box", frame_idx=3)
    assert len(found) > 0 and found.frame_idx == 3
    assert set(found.labels) <= {"ball", "box"}
    assert found.boxes.shape == (len(found), 4) and found.boxes.dtype == np.float32
    assert (found.boxes[:, 2] <= 144).all() and (found.boxes[:, 3] <= 96).all() and (found.boxes[:, :2] >= 0).all()
    assert (np.diff(found.scores) <= 0).all()  # best first
    best = found.best_per_label()
    assert len(best.labels) == len(set(best.labels))


def test_all_coco_classes_are_split_into_queries_that_fit(tiny_gdino, sample):
    grounder = load_grounder(str(tiny_gdino), settings=GroundingSettings(0.0, 0.0), device="cpu")
    groups = grounder._queries(COCO_CLASSES)
    assert [p for g in groups for p in g] == COCO_CLASSES
    for group in groups:
        assert len(grounder.processor.tokenizer(" . ".join(group) + " .").input_ids) <= grounder.max_text_len
    found = grounder.detect(sample[0].frames[0], COCO_CLASSES)
    assert set(found.labels) <= set(COCO_CLASSES)


def test_no_detection_is_a_clear_message_not_a_crash(tiny_gdino, sample):
    grounder = load_grounder(str(tiny_gdino), settings=GroundingSettings(1.0, 1.0), device="cpu")
    assert len(grounder.detect(sample[0].frames[0], "ball")) == 0
    with pytest.raises(ExtractionError, match="no 'ball' found on frame 0"):
        extract_masks(sample[0], text="ball", grounder=grounder, show_progress=False)


def test_box_thresholds_below_the_text_threshold_keep_more_boxes(tiny_gdino, sample, monkeypatch):
    """Each query's best token probability is its score; a box scoring 0.30 or 0.10 (below the 0.35 default and the
    0.25 text threshold) is kept at a lower box threshold, with the phrase of its best token."""
    grounder = load_grounder(str(tiny_gdino), device="cpu")
    ids = grounder.processor.tokenizer("ball . dog .").input_ids  # [CLS] ball . dog . [SEP]
    model_forward = grounder.model.forward

    def controlled(*args, **kwargs):
        out = model_forward(*args, **kwargs)
        logits = torch.full_like(out.logits, -20.0)  # [1, Q, text length]: every query scores ~0
        logit = lambda p: float(np.log(p / (1 - p)))  # noqa: E731
        logits[0, 0, ids.index(grounder.processor.tokenizer.convert_tokens_to_ids("dog"))] = logit(0.9)
        logits[0, 1, 1] = logit(0.30)  # "ball"
        logits[0, 2, 3] = logit(0.10)  # "dog"
        out.logits = logits
        out.pred_boxes = torch.tensor([[0.5, 0.5, 0.4, 0.4]]).expand_as(out.pred_boxes).clone()
        return out

    monkeypatch.setattr(grounder.model, "forward", controlled)
    frame = sample[0].frames[0]
    found = {}
    for threshold in (0.35, 0.2, 0.05):
        grounder.settings = GroundingSettings(box_threshold=threshold)
        found[threshold] = grounder.detect(frame, "ball . dog")
    assert found[0.35].labels == ["dog"]
    assert found[0.2].labels == ["dog", "ball"] and found[0.2].scores[1] == pytest.approx(0.30, abs=1e-4)
    assert found[0.05].labels == ["dog", "ball", "dog"]
    np.testing.assert_allclose(found[0.05].boxes[0], [0.3 * 144, 0.3 * 96, 0.7 * 144, 0.7 * 96], atol=1e-3)


def test_build_dataset_gives_its_box_threshold_to_the_grounder(tmp_path, monkeypatch):
    """build_dataset filtered by --box-threshold after a grounder built at the 0.35 default: lower values did
    nothing. The grounder now gets the threshold asked for."""
    from mvideo_core import build_dataset

    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "clip.txt").write_text("a bunny")
    seen = []

    def fake_load_grounder(*args, settings=None, **kwargs):
        seen.append(settings)
        raise ExtractionError("stop here")

    monkeypatch.setattr("mvideo_core.extraction.load_grounder", fake_load_grounder)
    assert build_dataset.main([str(tmp_path), str(tmp_path / "out"), "--box-threshold", "0.1"]) == 2
    assert seen[0].box_threshold == pytest.approx(0.1)


@pytest.mark.parametrize("value", ["nan", "1.5", "-0.1"])
def test_cli_threshold_outside_0_1_is_refused(tmp_path, sample, capsys, value):
    video_path = tmp_path / "v.mp4"
    from mvideo_core.video_io import write_video

    write_video(video_path, sample[0].frames[:2], 8.0)
    with pytest.raises(SystemExit) as exit_:  # argparse refuses it at the edge, before anything loads
        extract.main([str(video_path), "--text", "ball", "--box-threshold", value, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --box-threshold: must be a finite number in [0, 1]" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", [float("nan"), 1.5, -0.1, True])
def test_thresholds_outside_0_1_are_refused(value):
    with pytest.raises(ExtractionError, match="box_threshold is a probability in \\[0, 1\\]"):
        GroundingSettings(box_threshold=value)


@pytest.mark.parametrize("text", ["", " . ", ",", []])
def test_empty_text_is_explained(text):
    with pytest.raises(ExtractionError, match="holds no phrase"):
        parse_phrases(text)


def test_phrases_are_normalised():
    assert parse_phrases("Person . a  red ball,dog .") == ["person", "a red ball", "dog"]


def test_text_on_a_later_frame_adds_late_objects(sample):
    video, gt = sample
    result = extract_masks(
        video, text="ball", text_frames=[5], boxes=["0,0,30,30@0"], grounder=FixedGrounder(gt), show_progress=False
    )
    assert result.masks.ids == [1, 2] and result.masks.names == ["ball", "object 2"]
    assert result.masks.meta["prompt_frames"] == {"1": [5], "2": [0]}
    assert result.detections[0].frame_idx == 5
    inter = (result.masks.masks[0] & gt.masks[0]).sum()
    assert inter / (result.masks.masks[0] | gt.masks[0]).sum() > 0.8  # tracked both ways from frame 5


def test_the_same_text_on_several_frames_refines_one_object(sample):
    """Two --text-frame prompts for one phrase made two objects of the same name (issue 25.5): now one object
    prompted on both frames."""
    video, gt = sample
    result = extract_masks(
        video, text="ball . box", text_frames=[0, 6], grounder=FixedGrounder(gt), show_progress=False
    )
    assert sorted(result.masks.names) == ["ball", "box"] and result.masks.num_objects == 2
    assert result.masks.meta["prompt_frames"] == {"1": [0, 6], "2": [0, 6]}


def test_text_without_grounding_weights_points_at_the_flag(sample):
    with pytest.raises(ExtractionError, match="--grounding-dino"):
        extract_masks(sample[0], text="ball", show_progress=False)


def test_load_grounder_without_weights_names_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr("mvideo_core.extraction.discovery.in_hf_cache", lambda *a, **k: None)
    with pytest.raises(WeightsNotFound, match="IDEA-Research/grounding-dino-tiny.*--grounding-dino"):
        load_grounder(models_dir=tmp_path)


def test_box_and_click_strings():
    assert parse_box("10,20.5,30,40@7").box == (10.0, 20.5, 30.0, 40.0)
    assert parse_box("10,20,30,40@7:3").frame == 7 and parse_box("10,20,30,40:3").obj_id == 3
    click = parse_click("5,6,-@2")
    assert (click.x, click.y, click.positive, click.frame) == (5.0, 6.0, False, 2)
    assert parse_click("5,6").positive and parse_click("5,6,+@1:2").obj_id == 2
    for bad in ["10,20,30@1", "a,b,c,d", "1,2,3,4@x"]:
        with pytest.raises(ExtractionError, match="x0,y0,x1,y1@frame"):
            parse_box(bad)
    with pytest.raises(ExtractionError, match=r"x,y,\+@frame"):
        parse_click("5,6,*@1")


def test_click_past_the_end_and_outside_the_frame(sample):
    with pytest.raises(ExtractionError, match="frame 40 is outside the video, which has frames 0..8"):
        extract_masks(sample[0], clicks=["10,10,+@40"], show_progress=False)
    with pytest.raises(ExtractionError, match="outside the 144x96 frame"):
        extract_masks(sample[0], clicks=["500,10,+@0"], show_progress=False)
    with pytest.raises(ExtractionError, match="nothing to segment"):
        extract_masks(sample[0], show_progress=False)


@pytest.mark.parametrize(("fmt", "suffix"), [("png", ".zip"), ("npz", ".npz"), ("coco", ".json"), ("mp4", ".mp4")])
def test_cli_writes_masks_overlay_and_summary(tmp_path, sample, fmt, suffix, monkeypatch):
    from mvideo_core.video_io import write_video

    monkeypatch.setattr("mvideo_core.extraction.discovery.in_hf_cache", lambda *a, **k: None)
    video, gt = sample
    path = write_video(tmp_path / "in.mp4", video.frames, video.fps)
    ys, xs = np.nonzero(gt.masks[1, 0])
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}@0"
    out = tmp_path / "out"
    code = extract.main(
        [str(path), "--box", box, "--click", "20,20,+@4:2", "--out", str(out), "--format", fmt, "--quiet"]
    )
    assert code == 0
    masks = load_masks(out / f"masks{suffix}")
    assert masks.masks.shape == (2, 9, 96, 144) and masks.ids == [1, 2]
    summary = json.loads((out / "extraction.json").read_text())
    assert "weight-free fallback" in summary["tracker"] and (out / "overlay.mp4").stat().st_size > 0
    # every object's state on every frame, in extraction.json and in the mask file
    assert [o["id"] for o in summary["objects"]] == [1, 2]
    for obj in summary["objects"]:
        assert [f["frame"] for f in obj["frames"]] == list(range(9))
        assert {f["state"] for f in obj["frames"]} <= {"prompted", "tracked", "uncertain", "lost"}
        assert all(0.0 <= f["score"] <= 1.0 for f in obj["frames"])
    assert summary["objects"][0]["frames"][0]["state"] == "prompted"
    assert summary["objects"][1]["frames"][4]["state"] == "prompted"
    assert masks.meta["frame_states"] == summary["objects"]


def test_cli_reports_lost_frames_and_holds_frames_at_working_size(tmp_path, capsys, monkeypatch):
    """A subject that leaves the picture: the summary says where it was lost; the tracker gets frames at its working
    size (320 px for the classic one) while masks and the overlay come back at the video's 640x360."""
    from mvideo_core.extraction.classic import ClassicTracker
    from mvideo_core.extraction.real_footage import load_source_frames, make_clip
    from mvideo_core.video_io import probe_video, write_video

    video, gt = make_clip("fur_leaves_the_frame", load_source_frames(), size=(360, 640), num_frames=24)
    path = write_video(tmp_path / "walk.mp4", video.frames, 25.0, crf=12)
    seen = []
    start = ClassicTracker.start
    monkeypatch.setattr(ClassicTracker, "start", lambda self, f, fps: seen.append(f.shape) or start(self, f, fps))
    ys, xs = np.nonzero(gt.masks[0, 0])
    box = f"{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}@0"
    out = tmp_path / "out"
    assert extract.main([str(path), "--box", box, "--tracker", "classic", "--out", str(out), "--quiet"]) == 0
    assert seen == [(24, 180, 320, 3)]
    masks = load_masks(out / "masks.zip")
    assert masks.size == (360, 640) and probe_video(out / "overlay.mp4").width == 640
    states = {f["frame"]: f["state"] for f in masks.meta["frame_states"][0]["frames"]}
    lost = [t for t, state in states.items() if state == "lost"]
    gone = [t for t in range(24) if not gt.masks[0, t].any()]
    assert all(states[t] in ("lost", "uncertain") for t in gone) and set(range(19, 24)) <= set(lost)
    printed = capsys.readouterr().out
    assert f"object 1: lost on frames {lost[0]}-23: add a click there" in printed


def test_cli_text_without_weights_fails_cleanly(tmp_path, sample, capsys, monkeypatch):
    from mvideo_core.video_io import write_video

    monkeypatch.setattr("mvideo_core.extraction.discovery.in_hf_cache", lambda *a, **k: None)
    path = write_video(tmp_path / "in.mp4", sample[0].frames, 8.0)
    code = extract.main(
        [str(path), "--text", "person . dog", "--out", str(tmp_path / "o"), "--models-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "IDEA-Research/grounding-dino-tiny" in err and "--box" in err
    code = extract.main([str(tmp_path / "missing.mp4"), "--box", "1,1,9,9@0", "--out", str(tmp_path / "o")])
    assert code == 2 and "cannot read" in capsys.readouterr().err


def test_tiny_random_grounder_for_the_demo_says_what_it_is(sample):
    grounder = load_grounder(tiny_random=True, device="cpu")
    assert "tiny random" in grounder.description
    assert isinstance(grounder.detect(sample[0].frames[0], "person . dog"), Detections)


def test_cli_text_query_with_a_grounding_dino_folder(tmp_path, tiny_gdino, sample, monkeypatch):
    from mvideo_core.video_io import write_video

    monkeypatch.setattr("mvideo_core.extraction.discovery.in_hf_cache", lambda *a, **k: None)
    path = write_video(tmp_path / "in.mp4", sample[0].frames, 8.0)
    out = tmp_path / "out"
    args = [str(path), "--text", "ball . box", "--text-frame", "4", "--grounding-dino", str(tiny_gdino)]
    args += ["--box-threshold", "0", "--text-threshold", "0", "--out", str(out), "--format", "npz", "--quiet"]
    assert extract.main(args) == 0
    summary = json.loads((out / "extraction.json").read_text())
    names = [o["name"] for o in summary["objects"]]
    assert names and set(names) <= {"ball", "box"}
    assert load_masks(out / "masks.npz").meta["prompt_frames"] == {str(o["id"]): [4] for o in summary["objects"]}


def test_overlay_is_drawn_and_encoded_one_frame_at_a_time(tmp_path, sample):
    """The CLI's overlay: frames come from a generator (a decoder) and leave as they are encoded, so the overlay of a
    long video never sits in memory whole; the result is the same preview as from an array."""
    from mvideo_core.masks import write_overlay_video
    from mvideo_core.video_io import VideoError, read_video, write_video

    video, gt = sample
    pulled = []

    def frames():
        for t, frame in enumerate(video.frames):
            pulled.append(t)
            yield frame

    streamed = read_video(write_overlay_video(tmp_path / "a.mp4", frames(), gt)).frames
    whole = read_video(write_overlay_video(tmp_path / "b.mp4", video.frames, gt)).frames
    assert pulled == list(range(gt.num_frames)) and streamed.shape == whole.shape
    assert np.abs(streamed.astype(int) - whole).mean() < 1.0
    tinted = streamed[:, gt.masks[0].any(0)].mean() != video.frames[:, gt.masks[0].any(0)].mean()
    assert tinted
    with pytest.raises(VideoError, match="frame 1 is"):
        write_video(tmp_path / "c.mp4", iter([video.frames[0], video.frames[1, :10]]), 8.0)
