"""Dataset builder: scene cuts, clips with masks and captions in sharded manifests, resume, bad videos skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mvideo_core.extraction.base import Detections, Tracker
from mvideo_core.training.captions import CaptionError, CaptionSource, read_caption_csv
from mvideo_core.training.dataset_builder import BuildOptions, DatasetBuilder, find_segments, list_videos
from mvideo_core.training.manifest import ManifestError, merge_manifests, read_manifest, read_status, shard_of

SIZE = (64, 96)
OPTIONS = dict(min_seconds=1.0, max_seconds=None, fps=8.0, height=SIZE[0], width=SIZE[1], classes=["person"])


def _square_video(num_frames: int, cut_at: int | None = None, seed: int = 0, size=(96, 144)) -> tuple:
    """A red square moving right; a scene cut (new background) at `cut_at`. Returns frames and masks at `size`."""
    h, w = size
    rng = np.random.default_rng(seed)
    bg_a = rng.integers(40, 120, size=(h, w, 3)).astype(np.uint8)
    bg_b = rng.integers(150, 250, size=(h, w, 3)).astype(np.uint8)
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    masks = np.zeros((num_frames, h, w), bool)
    for t in range(num_frames):
        frames[t] = bg_b if cut_at is not None and t >= cut_at else bg_a
        x0 = 10 + (2 * t) % (w - 50)
        frames[t, 30:66, x0 : x0 + 36] = (230, 20, 20)
        masks[t, 30:66, x0 : x0 + 36] = True
    return frames, masks


class RedGrounder:
    """Test double with the Grounder API: a red blob is a 'person'; a textured frame gives a centred 'object' box;
    a flat frame gives nothing. Counts its calls (resume must not call it again)."""

    def __init__(self):
        self.calls = 0

    def detect(self, frame, phrases):
        self.calls += 1
        red = (frame[..., 0] > 170) & (frame[..., 1] < 90) & (frame[..., 2] < 90)
        h, w = frame.shape[:2]
        if red.sum() > 20:
            ys, xs = np.nonzero(red)
            return Detections([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.9], ["person"])
        if frame.std() > 20:
            return Detections([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], [0.5], ["object"])
        return Detections(np.zeros((0, 4)), [], [])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bigbuckbunny_path):
    """Two square videos (one with a scene cut), a flat video, bigbuckbunny, a corrupt file; sidecar captions."""
    from mvideo_core.video_io import write_video

    folder = tmp_path_factory.mktemp("videos")
    frames, _ = _square_video(24)
    write_video(folder / "square.mp4", frames, 8.0)
    (folder / "square.txt").write_text("a red square moving right\n")
    frames, _ = _square_video(32, cut_at=16, seed=1)
    write_video(folder / "cut.mp4", frames, 8.0)
    (folder / "cut.txt").write_text("a red square, then a new scene")
    flat = np.full((16, 96, 144, 3), 128, np.uint8)
    write_video(folder / "flat.mp4", flat, 8.0)
    (folder / "flat.txt").write_text("nothing happens")
    shutil.copy(bigbuckbunny_path, folder / "bunny.mp4")
    (folder / "bunny.txt").write_text("a big rabbit in a meadow")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 200)
    (folder / "broken.txt").write_text("never read")
    return folder


class BoxTracker(Tracker):
    """Test double on the real session bookkeeping: an object's mask is its box, carried unchanged."""

    name = "box"

    def _segment_prompt(self, session, obj, frame_idx):
        mask = np.zeros(session.size, bool)
        x0, y0, x1, y1 = (int(round(v)) for v in obj.prompts[frame_idx].box)
        mask[y0:y1, x0:x1] = True
        return mask

    def _carry(self, session, src, dst, obj_ids, reverse):
        for obj_id in obj_ids:
            session.objects[obj_id].masks[dst] = session.objects[obj_id].masks[src]


def _builder(grounder=None, tracker=None, **overrides):
    options = BuildOptions(**{**OPTIONS, **overrides})
    return DatasetBuilder(grounder or RedGrounder(), tracker or BoxTracker(), CaptionSource(), options)


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset")
    grounder = RedGrounder()
    report = _builder(grounder).build(list_videos(corpus), out, show_progress=False)
    return out, report, grounder


def test_scene_cut_splits_a_video_into_segments(corpus):
    segments = find_segments(corpus / "cut.mp4", BuildOptions(**OPTIONS))
    assert len(segments) == 2
    assert segments[0].start == pytest.approx(0.0)
    assert segments[1].start == pytest.approx(2.0, abs=0.13)
    assert segments[1].start_frame == pytest.approx(16, abs=1)


def test_segments_shorter_than_the_minimum_are_dropped(corpus):
    assert find_segments(corpus / "cut.mp4", BuildOptions(**{**OPTIONS, "min_seconds": 2.5})) == []


def test_long_segments_are_split_at_max_seconds(corpus):
    segments = find_segments(corpus / "bunny.mp4", BuildOptions(**{**OPTIONS, "min_seconds": 2.0, "max_seconds": 2.5}))
    assert [round(s.duration, 2) for s in segments] == [2.5, 2.5]


def test_manifest_records_clips_with_masks_source_offsets_and_caption(built):
    from mvideo_core.masks import load_masks

    out, report, _ = built
    records = {r.clip_id: r for r in read_manifest(out)}
    squares = [r for r in records.values() if r.source.endswith("square.mp4")]
    assert len(squares) == 1
    clip = squares[0]
    assert clip.caption == "a red square moving right"
    assert (clip.start, clip.fps, clip.num_frames, clip.height, clip.width) == (0.0, 8.0, 24, *SIZE)
    assert clip.objects[0].name == "person"
    masks = load_masks(out / clip.masks)
    assert masks.masks.shape == (1, 24, *SIZE)
    assert masks.names == ["person"]
    # the scene cut gives two clips of cut.mp4, the second starting at the cut
    cuts = sorted((r for r in records.values() if r.source.endswith("cut.mp4")), key=lambda r: r.start)
    assert [r.num_frames for r in cuts] == [16, 16]
    assert cuts[1].start == pytest.approx(2.0, abs=0.13)


def test_masks_from_the_classic_tracker_follow_the_subject(corpus, tmp_path):
    from mvideo_core.extraction.classic import ClassicTracker
    from mvideo_core.masks import load_masks
    from mvideo_core.video_io import resize_masks

    _builder(tracker=ClassicTracker()).build([corpus / "square.mp4"], tmp_path, show_progress=False)
    [clip] = read_manifest(tmp_path)
    masks = load_masks(tmp_path / clip.masks).masks[0]
    _, gt = _square_video(24)
    gt = resize_masks(gt, SIZE, fit="crop")
    iou = (masks & gt).sum(axis=(1, 2)) / (masks | gt).sum(axis=(1, 2))
    assert iou.min() > 0.6


def test_bigbuckbunny_gives_a_clip(built):
    out, _, _ = built
    bunny = [r for r in read_manifest(out) if r.source.endswith("bunny.mp4")]
    assert len(bunny) == 1
    assert bunny[0].caption == "a big rabbit in a meadow"
    assert bunny[0].meta["source_size"] == [720, 1280]


def test_clip_with_no_subject_is_dropped_and_counted(built):
    out, report, _ = built
    assert not [r for r in read_manifest(out) if r.source.endswith("flat.mp4")]
    assert report.dropped == {"no subject": 1}
    flat = next(v for s, v in read_status(out).items() if s.endswith("flat.mp4"))
    assert (flat["status"], flat["clips"]) == ("done", [])


def test_corrupt_video_is_skipped_with_its_reason(built):
    out, report, _ = built
    [(path, reason)] = report.failed.items()
    assert path.endswith("broken.mp4")
    assert reason  # e.g. "VideoError: ... cannot be opened ..."
    status = read_status(out)[path]
    assert status == {"source": path, "status": "failed", "reason": reason}
    assert report.processed == 4


def test_rerun_resumes_without_redoing_finished_videos(built, corpus):
    out, _, _ = built
    before = (out / "manifest-00000-of-00001.jsonl").read_text()
    grounder = RedGrounder()
    report = _builder(grounder).build(list_videos(corpus), out, show_progress=False)
    assert (report.processed, report.resumed, grounder.calls) == (0, 5, 0)
    assert (out / "manifest-00000-of-00001.jsonl").read_text() == before


def test_interrupted_video_keeps_its_finished_clips(built, corpus, tmp_path):
    """A run killed mid-video (clip written, no 'done' line) redoes only the missing clips."""
    out, _, _ = built
    copy = tmp_path / "ds"
    shutil.copytree(out, copy)
    status_file = copy / "status-00000-of-00001.jsonl"
    lines = [ln for ln in status_file.read_text().splitlines() if "cut.mp4" not in ln]
    status_file.write_text("\n".join(lines) + "\n")
    manifest = copy / "manifest-00000-of-00001.jsonl"
    kept = [ln for ln in manifest.read_text().splitlines() if not ("cut.mp4" in ln and '"start": 0.0' not in ln)]
    manifest.write_text("\n".join(kept) + '\n{"clip_id": "half-writ')  # plus a torn last line
    grounder = RedGrounder()
    report = _builder(grounder).build(list_videos(corpus), copy, show_progress=False)
    assert (report.processed, grounder.calls, report.clips) == (1, 1, 1)
    assert len([r for r in read_manifest(copy) if r.source.endswith("cut.mp4")]) == 2


def test_shards_are_disjoint_and_cover_the_single_run(built, corpus, tmp_path):
    out, _, _ = built
    videos = list_videos(corpus)
    for index in range(2):
        _builder().build(videos, tmp_path, shard_index=index, num_shards=2, show_progress=False)
    shard_files = sorted(p.name for p in tmp_path.glob("manifest-*.jsonl"))
    assert shard_files == ["manifest-00000-of-00002.jsonl", "manifest-00001-of-00002.jsonl"]
    ids = [{json.loads(ln)["clip_id"] for ln in (tmp_path / f).read_text().splitlines()} for f in shard_files]
    assert not ids[0] & ids[1]
    assert ids[0] | ids[1] == {r.clip_id for r in read_manifest(out)}
    merged = merge_manifests(tmp_path)
    assert len(merged.read_text().splitlines()) == len(ids[0] | ids[1])


def test_shard_of_rejects_a_bad_index():
    assert shard_of(list(range(5)), 1, 2) == [1, 3]
    with pytest.raises(ValueError, match=r"--shard-index must lie in \[0, 1\]"):
        shard_of([1, 2], 2, 2)


def test_no_captions_and_no_captioner_is_a_clear_error(tmp_path, corpus):
    folder = tmp_path / "v"
    folder.mkdir()
    shutil.copy(corpus / "square.mp4", folder / "square.mp4")
    with pytest.raises(CaptionError, match="--captioner MODEL_ID"):
        _builder().build(list_videos(folder), tmp_path / "out", show_progress=False)


def test_one_missing_caption_fails_that_video_only(tmp_path, corpus):
    folder = tmp_path / "v"
    folder.mkdir()
    shutil.copy(corpus / "square.mp4", folder / "a.mp4")
    (folder / "a.txt").write_text("captioned")
    shutil.copy(corpus / "square.mp4", folder / "b.mp4")
    report = _builder().build(list_videos(folder), tmp_path / "out", show_progress=False)
    assert report.processed == 1
    [(path, reason)] = report.failed.items()
    assert path.endswith("b.mp4") and "b.txt" in reason


def test_captions_from_csv_and_from_a_captioner(tmp_path):
    csv_path = tmp_path / "caps.csv"
    csv_path.write_text("video,caption\nclips/a.mp4,a dog running\n")
    assert read_caption_csv(csv_path) == {"clips/a.mp4": "a dog running", "a.mp4": "a dog running"}
    source = CaptionSource(csv_path, captioner=lambda frames: f"{len(frames)} frames")
    assert source.caption(tmp_path / "a.mp4") == "a dog running"
    assert source.caption(tmp_path / "b.mp4", np.zeros((3, 4, 4, 3), np.uint8)) == "3 frames"


def test_caption_csv_without_the_right_columns_is_rejected(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file_name,description\na.mp4,x\n")
    with pytest.raises(CaptionError, match="needs a header"):
        read_caption_csv(bad)


def test_corrupt_manifest_line_names_file_and_line(tmp_path):
    (tmp_path / "manifest-00000-of-00001.jsonl").write_text('\nnot json\n{"clip_id": 2}\n')
    with pytest.raises(ManifestError, match=r"manifest-00000-of-00001.jsonl:2 is not valid JSON"):
        read_manifest(tmp_path)


def test_manifest_record_with_missing_fields_is_rejected(tmp_path):
    (tmp_path / "manifest-00000-of-00001.jsonl").write_text('{"clip_id": "a"}\n')
    with pytest.raises(ManifestError, match="record 1 does not match the manifest format"):
        read_manifest(tmp_path)


def test_cli_rejects_a_bad_shard_index(tmp_path, corpus, capsys):
    from mvideo_core import build_dataset

    code = build_dataset.main([str(corpus), str(tmp_path), "--shard-index", "2", "--num-shards", "2"])
    assert code == 2
    assert "--shard-index must lie in [0, 1]" in capsys.readouterr().err


def test_cli_takes_the_shard_from_accelerate_env(monkeypatch):
    from mvideo_core.training.dataset_builder import shard_from_env

    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert shard_from_env() == (3, 4)


class TruthGrounder:
    """Test double: returns the exact boxes of the sample whose first frame this is (as a perfect detector would)."""

    def __init__(self, samples):
        self.samples = samples  # list of (first frame uint8 [H, W, 3], MaskSet)

    def detect(self, frame, phrases):
        from mvideo_core.metrics import mask_box

        diffs = [np.abs(first.astype(int) - frame.astype(int)).mean() for first, _ in self.samples]
        masks = self.samples[int(np.argmin(diffs))][1]
        boxes = [mask_box(masks.masks[k, 0]) for k in range(masks.num_objects)]
        return Detections(np.stack(boxes), [0.9] * len(boxes), masks.names)


def test_builder_on_generated_samples_tracks_their_subjects(tmp_path):
    """Procedural samples with exact masks: the built clips' masks (classic tracker from the detected boxes) match."""
    from mvideo_core.extraction.classic import ClassicTracker
    from mvideo_core.masks import load_masks
    from mvideo_core.metrics import mask_iou
    from mvideo_core.samples import make_sample
    from mvideo_core.video_io import write_video

    samples = {}
    for name in ("shapes", "figure"):
        video, masks = make_sample(name, size=(96, 144), num_frames=12, fps=8.0)
        write_video(tmp_path / "in" / f"{name}.mp4", video.frames, 8.0, crf=12)
        (tmp_path / "in" / f"{name}.txt").write_text(f"the {name} sample")
        samples[name] = (video.frames[0], masks)
    builder = _builder(TruthGrounder(list(samples.values())), ClassicTracker(), height=96, width=144)
    report = builder.build(list_videos(tmp_path / "in"), tmp_path / "out", show_progress=False)
    assert (report.clips, report.failed) == (2, {})
    for clip in read_manifest(tmp_path / "out"):
        name = Path(clip.source).stem
        truth = samples[name][1]
        built = load_masks(tmp_path / "out" / clip.masks)
        assert built.names == truth.names and clip.caption == f"the {name} sample"
        ious = [mask_iou(built.masks[k, t], truth.masks[k, t]) for k in range(truth.num_objects) for t in range(12)]
        assert np.mean(ious) > 0.6, (name, np.mean(ious))


def test_cli_builds_with_real_engines_and_resumes(tmp_path, corpus, capsys):
    """The CLI end to end with a tiny random Grounding DINO (finds nothing meaningful) and the classic tracker."""
    from mvideo_core import build_dataset
    from mvideo_core.extraction.grounding import save_random_grounding_dino

    grounder = save_random_grounding_dino(tmp_path / "gdino")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# two videos\n{corpus / 'square.mp4'}\n{corpus / 'broken.mp4'}\n")
    argv = [str(listing), str(tmp_path / "ds"), "--grounder", str(grounder), "--tracker", "classic"]
    argv += ["--min-seconds", "1", "--size", "64x96", "--no-progress"]
    assert build_dataset.main(argv) == 0
    out = capsys.readouterr().out
    assert "2 videos, 1 processed" in out and "1 failed" in out
    assert build_dataset.main(argv) == 0
    assert "0 processed, 2 already finished" in capsys.readouterr().out
    assert build_dataset.main([str(listing), str(tmp_path / "ds"), "--merge"]) == 0
    assert (tmp_path / "ds" / "manifest.jsonl").is_file()


def test_cli_without_grounding_weights_names_the_flag(tmp_path, corpus, capsys, monkeypatch):
    from mvideo_core import build_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = build_dataset.main([str(corpus), str(tmp_path / "ds"), "--models-dir", str(tmp_path / "none")])
    assert code == 2
    assert "--grounding-dino" in capsys.readouterr().err


def test_captioner_that_cannot_load_says_what_to_give_instead(tmp_path, monkeypatch):
    from mvideo_core.training.captions import TransformersCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    captioner = TransformersCaptioner(str(tmp_path / "no-such-model"))
    source = CaptionSource(captioner=captioner)
    with pytest.raises(CaptionError, match="could not load the captioner .* sidecars or a CSV"):
        source.caption(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.uint8))


def test_empty_captioner_output_is_an_error(tmp_path):
    source = CaptionSource(captioner=lambda frames: "  ")
    with pytest.raises(CaptionError, match="empty caption"):
        source.caption(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), np.uint8))


def test_video_shorter_than_the_minimum_is_finished_not_failed(tmp_path, corpus):
    report = _builder(min_seconds=10.0).build([corpus / "square.mp4"], tmp_path, show_progress=False)
    assert (report.processed, report.failed, report.dropped) == (1, {}, {"video shorter than min_seconds": 1})
    assert next(iter(read_status(tmp_path).values()))["status"] == "done"
