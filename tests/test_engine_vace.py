"""The VACE engine on a tiny random Wan2.1-VACE: parity with a direct WanVACEPipeline call, known frames carried
from clip to clip, the CLI's 8 s run (two clips streamed in order), resume after a kill, refused settings."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mvideo_core.engines import EngineError, VaceEngine, as_engine, get_engine
from mvideo_core.generate import main
from mvideo_core.long_video import ClipResult, LongVideoResult, generate_long_video
from mvideo_core.masks import MaskSet, save_masks
from mvideo_core.settings import GenerationSettings, SettingsError
from mvideo_core.vace import draw_layout
from mvideo_core.video_io import probe_video

H, W = 32, 48  # small: 4x6 latents, 2x3 patches
FAST = {"num_inference_steps": 1, "height": H, "width": W, "guidance_scale": 5.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def engine(one_torch_thread):
    engine = VaceEngine.load_tiny_random()
    engine.set_progress(False)
    return engine


def _masks(num_frames: int = 129, fps: float = 16.0) -> MaskSet:
    """Two boxes moving right at the engine's frame rate and size (so preparing them changes nothing)."""
    m = np.zeros((2, num_frames, H, W), dtype=bool)
    for t in range(num_frames):
        x = t * (W - 12) // num_frames
        m[0, t, 4:16, x : x + 10] = True
        m[1, t, 18:30, W - 12 - x : W - 2 - x] = True
    return MaskSet(m, fps=fps, names=["dog", "ball"])


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def test_wan_clip_spec_adds_4_s_per_clip_with_17_known_frames(engine):
    spec = engine.spec
    assert (spec.fps, spec.clip_frames, spec.overlap_frames, spec.clip_seconds) == (16.0, 81, 17, 4.0)
    assert (spec.vae_scale_spatial, spec.vae_scale_temporal, spec.latent_channels) == (8, 4, 16)
    assert spec.prediction_type == "flow_prediction" and spec.size_multiple == 16
    assert spec.num_clips(8) == 2 and spec.clip_ranges(3) == [(0, 65), (48, 129), (112, 193)]
    assert spec.total_frames(2) == 129  # 8 s at 16 fps (+ the closing frame, as MVideo's 32n + 1)
    assert get_engine("vace") is VaceEngine and as_engine(engine.pipe).name == "vace"


def test_engine_clip_equals_a_direct_wan_vace_pipeline_call(engine):
    masks = _masks()
    start = np.random.default_rng(0).integers(0, 256, (24, 20, 3), dtype=np.uint8)
    settings = GenerationSettings("a dog running in a park", seconds=8, start_image=start, **FAST)
    prepared = engine.prepare(masks, settings)
    frames = engine.generate_clip(prepared, 0, None, seed=7)

    layout = draw_layout(masks.masks[:, :65])  # clip 0: frames [0, 65), all generated
    direct = engine.pipe(
        prompt="a dog running in a park",
        video=(layout / np.float32(255))[None],
        mask=np.ones((1, 65, H, W, 1), dtype=np.float32),
        reference_images=Image.fromarray(start),
        height=H,
        width=W,
        num_frames=65,
        num_inference_steps=1,
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(7),
        max_sequence_length=engine.max_sequence_length,
        output_type="np",
    ).frames[0]
    assert frames.shape == (65, H, W, 3)
    np.testing.assert_array_equal(frames, _to_uint8(direct))


def test_continuation_clip_keeps_the_previous_clips_last_frames_as_known(engine):
    masks = _masks()
    prepared = engine.prepare(masks, GenerationSettings("a dog", seconds=8, **FAST))
    previous = np.random.default_rng(1).integers(0, 256, (65, H, W, 3), dtype=np.uint8)
    inputs = engine.clip_inputs(prepared, 1, previous)
    assert inputs.video.shape == (81, H, W, 3) and inputs.num_known == 17
    np.testing.assert_array_equal(inputs.video[:17], previous[-17:] / np.float32(255))
    np.testing.assert_array_equal(inputs.video[17:], draw_layout(masks.masks[:, 65:129]) / np.float32(255))
    assert not inputs.mask[:17].any() and inputs.mask[17:].all()


def test_long_video_passes_each_clips_last_frames_to_the_next(engine, tmp_path, monkeypatch):
    calls = []
    real = type(engine.pipe).__call__

    def spy(pipe, *args, **kwargs):
        calls.append({"video": kwargs["video"].copy(), "mask": kwargs["mask"].copy()})
        return real(pipe, *args, **kwargs)

    monkeypatch.setattr(type(engine.pipe), "__call__", spy)
    out = list(generate_long_video(engine, "a dog", out_dir=tmp_path, masks=_masks(), seconds=8, **FAST))
    clips = [r for r in out if isinstance(r, ClipResult)]
    assert [c.index for c in clips] == [0, 1] and len(calls) == 2
    assert calls[0]["mask"].all()  # clip 0: nothing known
    known = np.round(calls[1]["video"][0, :17] * 255).astype(np.uint8)
    np.testing.assert_array_equal(known, clips[0].frames[-17:])
    assert not calls[1]["mask"][0, :17].any() and calls[1]["mask"][0, 17:].all()


def test_cli_makes_8_s_as_two_clips_streamed_in_order_then_resumes_after_a_kill(tmp_path, capsys, monkeypatch):
    mask_file = save_masks(_masks(80, fps=10.0), tmp_path / "masks.npz")
    args = ["--engine", "vace", "--tiny-random", "--masks", str(mask_file), "--prompt", "a dog", "--seconds", "8"]
    args += ["--steps", "1", "--height", str(H), "--width", str(W), "--guidance", "5"]
    whole = tmp_path / "whole"
    assert main([*args, "--out", str(whole)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("clip 1/2") and lines[1].startswith("clip 2/2") and "clip_001.mp4" in lines[1]
    assert json.loads(lines[-1])["frames"] == 129
    info = probe_video(whole / "final.mp4")
    assert (info.num_frames, info.fps) == (129, 16.0) and abs(info.duration - 8.0) < 0.1
    record = json.loads((whole / "generation.json").read_text())
    assert record["settings"]["engine"] == "vace" and record["model"]["engine"] == "vace"
    assert [c["index"] for c in record["clips"]] == [0, 1]

    # Killed while making clip 1 (clip 0 and its state on disk, no final video), then the same command again.
    out = tmp_path / "out"
    real = VaceEngine.generate_clip

    def killed_at_clip_1(self, prepared, k, *a, **kw):
        if k == 1:
            raise RuntimeError("killed")
        return real(self, prepared, k, *a, **kw)

    monkeypatch.setattr(VaceEngine, "generate_clip", killed_at_clip_1)
    assert main([*args, "--out", str(out)]) == 2
    assert (out / ".state" / "clip_000.npz").is_file() and not (out / "final.mp4").exists()
    monkeypatch.setattr(VaceEngine, "generate_clip", real)
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "(resumed)" in lines[0] and "(resumed)" not in lines[1]
    resumed = json.loads((out / "generation.json").read_text())
    assert [c["frames_sha1"] for c in resumed["clips"]] == [c["frames_sha1"] for c in record["clips"]]  # exact frames
    assert probe_video(out / "final.mp4").num_frames == 129


def test_a_generator_closed_mid_video_resumes_to_the_same_frames(engine, tmp_path):
    kwargs = {"masks": _masks(), "seconds": 8, **FAST}
    whole = [r for r in generate_long_video(engine, "a dog", out_dir=tmp_path / "a", **kwargs)]
    run = generate_long_video(engine, "a dog", out_dir=tmp_path / "b", **kwargs)
    assert next(run).index == 0
    run.close()  # the process dies between clips
    assert not (tmp_path / "b" / "final.mp4").exists()
    again = list(generate_long_video(engine, "a dog", out_dir=tmp_path / "b", **kwargs))
    assert again[0].resumed and not again[1].resumed and isinstance(again[-1], LongVideoResult)
    for a, b in zip(whole[:2], again[:2]):
        np.testing.assert_array_equal(a.frames, b.frames)


def test_the_record_tells_apart_two_splits_of_the_same_union_into_objects(engine):
    """A resumed run checks masks_sha1: for VACE it covers each object (each has its own colour), not the union."""
    settings = GenerationSettings("a dog", seconds=4, **FAST)
    masks = _masks(65)
    merged = MaskSet(masks.masks.any(axis=0, keepdims=True), fps=masks.fps)
    swapped = MaskSet(masks.masks[::-1].copy(), fps=masks.fps)
    sha1s = [engine.prepare(m, settings).masks_sha1 for m in (masks, _masks(65), merged, swapped)]
    assert sha1s[0] == sha1s[1] and len(set(sha1s)) == 3  # the same masks match; a merge or a swap does not
    assert engine.prepare(None, settings).masks_sha1 is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"mask_guidance_scale": 2.0}, "mask_guidance_scale"),
        ({"condition_size": (16, 16)}, "condition_size"),
        ({"seconds": 6}, "seconds"),
        ({"height": 40}, "height"),
    ],
)
def test_settings_the_engine_cannot_honour_are_refused_before_any_work(engine, changes, field):
    with pytest.raises(SettingsError) as err:
        engine.prepare(_masks(), GenerationSettings("a dog", **{**FAST, **changes}))
    assert err.value.field == field


def test_memory_switches_and_extra_weights(engine):
    with pytest.raises(EngineError, match="takes no extra weights"):
        VaceEngine.from_pretrained("Wan-AI/Wan2.1-VACE-1.3B-diffusers", "mvideo.safetensors")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="needs a CUDA GPU"):
            engine.configure_memory(offload="model")
    with pytest.raises(EngineError, match="offload must be"):
        engine.configure_memory(offload="disk")
    assert engine.identity == {"engine": "vace", "base_model": "tiny-random-vace"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--base-model", "/no/such/wan"], "--base-model Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
        (
            ["--base-model", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "--mvideo-weights", "m.safetensors"],
            "no extra weights",
        ),
    ],
)
def test_cli_names_the_missing_checkpoint_and_the_flag(tmp_path, capsys, extra, message):
    args = ["--engine", "vace", "--prompt", "a dog", "--seconds", "4", "--out", str(tmp_path / "o"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "generation.json").exists()
