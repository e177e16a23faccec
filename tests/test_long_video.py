"""Long videos by clips: timeline, streaming order, resume after a kill, cancel, colour drift, record, audio."""

import json
import threading

import av
import numpy as np
import pytest
import torch

from mvideo_core.long_video import (
    CLIP_FRAMES,
    ClipResult,
    LongVideoResult,
    clip_frame_ranges,
    color_drift,
    condition_window,
    generate_long_video,
    lab_stats,
    match_colors,
    num_clips_for,
    total_frames,
)
from mvideo_core.masks import MaskSet
from mvideo_core.pipeline_mvideo import MVideoPipeline
from mvideo_core.tiny import tiny_scheduler, tiny_text_encoder, tiny_tokenizer, tiny_transformer, tiny_vae
from mvideo_core.transformer import MVideoTransformer3DModel
from mvideo_core.video_io import probe_video, read_video

H, W = 64, 96
FAST = {"num_inference_steps": 1, "guidance_scale": 1.0, "progress": False}


@pytest.fixture(scope="module")
def pipe():
    transformer = MVideoTransformer3DModel.from_cogvideox(tiny_transformer("2b", seed=2))
    with torch.no_grad():  # as if trained: conditions and masks matter
        transformer.condition_embed.gates.fill_(1.0)
        transformer.mask_proj.weight.normal_(0, 0.05)
    p = MVideoPipeline(tiny_tokenizer(), tiny_text_encoder(), tiny_vae(), transformer, tiny_scheduler("2b"))
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture
def masks():
    m = np.zeros((8 * 12 + 1, 48, 72), dtype=bool)  # 12 s at 8 fps, another size than the output
    for t in range(m.shape[0]):
        m[t, 10:30, (t % 50) : (t % 50) + 20] = True
    return MaskSet(m[None], fps=8.0, names=["dog"])


def test_timeline_clips_overlap_by_one_frame():
    assert num_clips_for(16) == 4 and total_frames(4) == 129  # 16 s + 1 frame at 8 fps
    assert clip_frame_ranges(3) == [(0, 33), (32, 65), (64, 97)]
    assert condition_window(32) == (32, (0, 33))  # appearance = clip's first frame = previous clip's last
    for bad in (0, 6, -4, 4.5):
        with pytest.raises(ValueError, match="multiple of 4"):
            num_clips_for(bad)
    with pytest.raises(ValueError, match="no previous"):
        condition_window(10)


def test_clips_stream_in_order_each_on_disk_before_it_is_yielded(pipe, masks, tmp_path):
    seen = []
    for result in generate_long_video(pipe, "a dog running", out_dir=tmp_path, seconds=16, masks=masks, **FAST):
        if isinstance(result, ClipResult):
            assert result.path.is_file() and probe_video(result.path).num_frames == CLIP_FRAMES
            assert not (tmp_path / f"clip_{result.index + 1:03d}.mp4").exists()  # the next one is not made yet
            assert result.frames.shape == (CLIP_FRAMES, H, W, 3) and result.frames.dtype == np.uint8
        seen.append(result)
    assert [r.index for r in seen[:-1]] == [0, 1, 2, 3]
    final = seen[-1]
    assert isinstance(final, LongVideoResult) and final.num_frames == 129
    joined = read_video(final.path).frames
    assert joined.shape == (129, H, W, 3)
    expected = np.concatenate([seen[0].frames, *(r.frames[1:] for r in seen[1:4])])  # shared frames appear once
    other = np.concatenate([seen[0].frames[:-1], *(r.frames[:-1] for r in seen[1:3]), seen[3].frames])
    assert np.abs(joined.astype(int) - expected).mean() < np.abs(joined.astype(int) - other).mean()
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["settings"]["seeds"] == [0, 1, 2, 3] and record["settings"]["num_inference_steps"] == 1
    assert record["settings"]["prompt"] == "a dog running"
    assert {"torch", "diffusers", "transformers", "peft", "mvideo_core"} <= set(record["versions"])
    assert [c["index"] for c in record["clips"]] == [0, 1, 2, 3] and record["final"]["num_frames"] == 129
    assert all(0.0 <= c["drift"]["histogram"] <= 1.0 for c in record["clips"])


def test_killed_run_resumes_from_last_finished_clip_with_the_same_result(pipe, masks, tmp_path):
    whole = list(generate_long_video(pipe, "a dog", out_dir=tmp_path / "a", seconds=8, masks=masks, **FAST))
    run = generate_long_video(pipe, "a dog", out_dir=tmp_path / "b", seconds=8, masks=masks, **FAST)
    assert next(run).index == 0
    run.close()  # killed after the first clip
    assert not (tmp_path / "b" / "clip_001.mp4").exists()
    resumed = list(generate_long_video(pipe, "a dog", out_dir=tmp_path / "b", seconds=8, masks=masks, **FAST))
    assert [r.resumed for r in resumed[:-1]] == [True, False]
    for a, b in zip(whole[:-1], resumed[:-1]):
        assert np.array_equal(a.frames, b.frames)  # clip 1 is conditioned on the exact frames of clip 0
    assert resumed[-1].num_frames == whole[-1].num_frames == 65


def test_resume_with_other_settings_is_refused(pipe, masks, tmp_path):
    list(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=4, masks=masks, **FAST))
    with pytest.raises(ValueError, match="another generation.*prompt"):
        next(generate_long_video(pipe, "a cat", out_dir=tmp_path, seconds=4, masks=masks, **FAST))
    out = list(generate_long_video(pipe, "a cat", out_dir=tmp_path, seconds=4, masks=masks, resume=False, **FAST))
    assert out[0].resumed is False


def test_bad_requests_fail_before_any_work(pipe, masks, tmp_path):
    with pytest.raises(ValueError, match="prompt is empty"):
        next(generate_long_video(pipe, "  ", out_dir=tmp_path, seconds=4, masks=masks))
    with pytest.raises(ValueError, match="multiple of 4"):
        next(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=10, masks=masks))
    with pytest.raises(ValueError, match="masks"):
        next(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=4, masks=np.zeros((3, 4), dtype=bool)))
    with pytest.raises(ValueError, match="mask_guidance_scale steers towards the masks: give masks too"):
        next(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=4, mask_guidance_scale=2.0))
    assert not list(tmp_path.glob("clip_*.mp4"))


def test_mask_guidance_reaches_every_clip_and_the_record(pipe, masks, tmp_path):
    plain = list(generate_long_video(pipe, "a dog", out_dir=tmp_path / "a", seconds=8, masks=masks, **FAST))
    pushed = list(
        generate_long_video(
            pipe, "a dog", out_dir=tmp_path / "b", seconds=8, masks=masks, mask_guidance_scale=3.0, **FAST
        )
    )
    for a, b in zip(plain[:-1], pushed[:-1]):
        assert not np.array_equal(a.frames, b.frames)
    assert json.loads((tmp_path / "b" / "generation.json").read_text())["settings"]["mask_guidance_scale"] == 3.0


def test_a_record_written_before_later_settings_existed_still_resumes(pipe, masks, tmp_path):
    first = list(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=8, masks=masks, **FAST))
    record_path = tmp_path / "generation.json"
    record = json.loads(record_path.read_text())
    for key in ("mask_guidance_scale", "mask_policy", "mask_fit", "engine"):  # what older versions did not write
        del record["settings"][key]
    record_path.write_text(json.dumps(record))
    again = list(generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=8, masks=masks, **FAST))
    assert [r.resumed for r in again[:-1]] == [True, True]
    with pytest.raises(ValueError, match=r"different mask_guidance_scale\)"):  # left out meant 1 (off)
        next(
            generate_long_video(
                pipe, "a dog", out_dir=tmp_path, seconds=8, masks=masks, mask_guidance_scale=2.0, **FAST
            )
        )
    assert again[0].frames.shape == first[0].frames.shape  # read back from clip_000.mp4 (the states were pruned)


def test_cancel_stops_after_the_current_step(pipe, masks, tmp_path):
    cancel = threading.Event()
    results = []
    for r in generate_long_video(pipe, "a dog", out_dir=tmp_path, seconds=12, masks=masks, cancel=cancel, **FAST):
        results.append(r)
        cancel.set()
    assert len(results) == 1 and not (tmp_path / "final.mp4").exists()


def test_text_only_long_video_with_start_image(pipe, tmp_path):
    start = np.zeros((100, 150, 3), dtype=np.uint8)
    start[..., 0] = 255
    out = list(generate_long_video(pipe, "a red sky", out_dir=tmp_path, seconds=4, start_image=start, **FAST))
    assert out[-1].num_frames == 33 and out[0].frames.shape == (33, H, W, 3)


def test_colour_drift_is_measured_and_matching_reduces_it():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 200, (4, 32, 32, 3), dtype=np.uint8)
    assert color_drift(ref[-1], ref[-1]) == {"mean_color": 0.0, "histogram": 0.0}
    drifted = np.clip(ref.astype(int) + [40, 10, -20], 0, 255).astype(np.uint8)
    before = color_drift(drifted[-1], ref[-1])
    after = color_drift(match_colors(drifted, lab_stats(ref))[-1], ref[-1])
    assert before["mean_color"] > 0.05
    assert after["mean_color"] < before["mean_color"] / 3 and after["histogram"] < before["histogram"]


def test_final_video_carries_the_source_audio(pipe, tmp_path):
    tone = tmp_path / "tone.m4a"
    with av.open(str(tone), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000 * 5) / 10) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    out = list(generate_long_video(pipe, "a dog", out_dir=tmp_path / "o", seconds=4, audio_from=tone, **FAST))
    assert probe_video(out[-1].path).has_audio
    assert not probe_video(out[0].path).has_audio  # streamed clips are silent


def test_cli_generates_from_a_mask_file_on_a_tiny_random_model(tmp_path, capsys):
    from mvideo_core.generate import main
    from mvideo_core.masks import save_masks

    m = np.zeros((1, 40, 48, 72), dtype=bool)
    m[0, :, 10:30, 10:30] = True
    mask_file = save_masks(MaskSet(m, fps=8.0), tmp_path / "masks.npz")
    args = ["--masks", str(mask_file), "--prompt", "a dog", "--seconds", "4", "--out", str(tmp_path / "out")]
    assert main([*args, "--steps", "1", "--tiny-random", "2b"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()  # (deepspeed may log a line first when imported here)
    assert [line for line in lines if line.startswith("clip ")][0].startswith("clip 1/1")
    assert json.loads(lines[-1])["frames"] == 33
    assert (tmp_path / "out" / "final.mp4").is_file()


def test_cli_names_the_missing_weights_and_flag(tmp_path, capsys):
    from mvideo_core.generate import main

    assert (
        main(["--prompt", "a dog", "--out", str(tmp_path), "--mvideo-weights", str(tmp_path / "none.safetensors")])
        == 2
    )
    assert "--mvideo-weights" in capsys.readouterr().err
    assert (
        main(["--prompt", "a dog", "--out", str(tmp_path), "--masks", str(tmp_path / "nope.zip"), "--tiny-random"])
        == 2
    )
    assert "no such mask file" in capsys.readouterr().err
