"""Toy stages on a minuscule config: a stage stopped half-way resumes to the same weights as an uninterrupted run;
the chain data -> base -> mvideo -> ship ends in a pipeline loaded through the normal loading code."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from research.toy import stages
from research.toy.__main__ import main as toy_main
from research.toy.config import ToyConfig
from research.toy.stages import StageError, prepare_work

TINY = dict(
    vae_blocks=(4, 4, 4, 4),
    vae_steps=4,
    vae_batch=1,
    vae_snippet_frames=9,
    vae_crop=(16, 16),
    eval_clips=1,
    text_clips=1,
    long_clips=1,
    inference_steps=2,
    base_clips=2,
    mask_clips=2,
    base_steps=4,
    base_batch=2,
    num_layers=1,
    num_heads=2,
    head_dim=8,
    time_embed_dim=16,
    mvideo_steps=2,
    mvideo_batch=2,
    lora_rank=2,
    checkpoint_every=2,
)


class Stop(Exception):
    pass


def _vae_weights(work):
    return load_file(str(work / "vae" / "model" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    torch.set_num_threads(1)
    work, config = prepare_work(tmp_path_factory.mktemp("toy") / "work", ToyConfig(**TINY))
    figures = stages.stage_vae(work, config, progress=False)
    return work, config, figures


def test_vae_stage_reports_psnr_and_resumes_exactly(trained_vae, tmp_path, monkeypatch):
    work_a, config, figures = trained_vae
    assert figures["steps"] == 4 and 0 < figures["psnr_heldout_db"] < 100 and figures["scaling_factor"] > 0
    work_b, _ = prepare_work(tmp_path / "b", config)
    real = stages._vae_batch

    def stop_at_3(cfg, step):
        if step == 3:
            raise Stop
        return real(cfg, step)

    monkeypatch.setattr(stages, "_vae_batch", stop_at_3)
    with pytest.raises(Stop):
        stages.stage_vae(work_b, config, progress=False)
    assert sorted(p.name for p in (work_b / "vae").glob("checkpoint-*.pt")) == ["checkpoint-000002.pt"]
    assert not stages.is_done(work_b / "vae")
    monkeypatch.setattr(stages, "_vae_batch", real)
    stages.stage_vae(work_b, config, progress=False)  # goes on from step 2
    a, b = _vae_weights(work_a), _vae_weights(work_b)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # a finished stage returns its figures without training again
    assert stages.stage_vae(work_b, config, progress=False)["steps"] == 4


def test_vae_stage_reports_the_mask_miou_ceiling_through_its_vae(trained_vae, monkeypatch, tmp_path):
    from research.toy import evaluation
    from research.toy.world import sample_scene

    work, config, figures = trained_vae
    kind = "+".join(sorted({s.shape for s in sample_scene("heldout", 0).subjects}))
    assert 0 <= figures["miou_vae_ceiling"] <= 1 and figures["miou_vae_ceiling_clips"] == [figures["miou_vae_ceiling"]]
    assert figures[f"miou_vae_ceiling_{kind}"] == figures["miou_vae_ceiling"]  # one clip: its shape kind's mean
    assert json.loads((work / "vae" / "ceiling" / "scores.json").read_text())["miou"] == figures["miou_vae_ceiling"]
    # the measure is the ground truth's own score once the VAE changes nothing; a blank VAE scores 0
    truth = evaluation.eval_mask_miou(work, config, None, tmp_path / "truth")["miou"]
    assert truth > 0.5
    for name, rec, expected in (
        ("same", lambda vae, frames: frames, truth),
        ("blank", lambda vae, frames: frames * 0, 0),
    ):
        monkeypatch.setattr(stages, "reconstruct", rec)
        again, _ = prepare_work(tmp_path / name, config)
        assert stages.stage_vae(again, config, progress=False)["miou_vae_ceiling"] == expected, name


def test_vae_stage_in_bf16_runs_the_passes_in_bf16_and_saves_fp32(trained_vae, tmp_path, monkeypatch):
    from research.toy import models

    fp32_work, config, _ = trained_vae
    real, seen = models.toy_vae, []

    def recording_vae(cfg):
        vae = real(cfg)
        vae.decoder.register_forward_hook(lambda module, args, out: seen.append(out[0].dtype))  # (frames, conv cache)
        return vae

    monkeypatch.setattr(models, "toy_vae", recording_vae)
    work, bf16 = prepare_work(tmp_path / "bf16", dataclasses.replace(config, vae_precision="bf16"))
    figures = stages.stage_vae(work, bf16, progress=False)
    assert seen[: bf16.vae_steps] == [torch.bfloat16] * bf16.vae_steps  # the training steps; evaluation is fp32
    assert 0 < figures["psnr_heldout_db"] < 100
    a, b = _vae_weights(fp32_work), _vae_weights(work)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed and batches: only the precision differs


def test_chain_base_resume_mvideo_ship_and_load(trained_vae, tmp_path, monkeypatch, capsys):
    from mvideo_core.training import losses
    from research.toy import load_toy_pipeline
    from research.toy.report import ship

    src, config, _ = trained_vae
    work = tmp_path / "w"
    shutil.copytree(src, work)
    capsys.readouterr()
    stages.stage_data(work, config, progress=False)
    assert "world base" not in capsys.readouterr().err  # --no-progress: no bars, the world's included
    other = tmp_path / "w2"
    shutil.copytree(work, other)
    stages.stage_base(work, config, progress=False)

    real, calls = losses.diffusion_loss, []

    def stop_at_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise Stop
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "diffusion_loss", stop_at_3)
    with pytest.raises(Stop):
        stages.stage_base(other, config, progress=False)
    monkeypatch.setattr(losses, "diffusion_loss", real)
    stages.stage_base(other, config, progress=False)
    name = "transformer/diffusion_pytorch_model.safetensors"
    a = load_file(str(stages.base_model_dir(work) / name))
    b = load_file(str(stages.base_model_dir(other) / name))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)

    # the `mvideo` stage trains with the config's alpha (consistency_weight) and L_c variant
    capsys.readouterr()
    figures = stages.STAGES["mvideo"](work, dataclasses.replace(config, consistency_weight=2.5), progress=False)
    assert "train:" not in capsys.readouterr().err  # the trainer's step bar obeys --no-progress too
    assert figures["alpha"] == 2.5 and figures["final_loss_consistency"] >= 0
    run_config = json.loads((work / "mvideo_a1" / "train_config.json").read_text())
    assert run_config["consistency_weight"] == 2.5
    assert run_config["consistency_inputs"] == config.consistency_inputs
    dest = ship(work, tmp_path / "assets")
    pipe = load_toy_pipeline(dest)
    assert "Toy" in pipe.mvideo_metadata["label"]
    masks = torch.zeros(33, 64, 96, dtype=torch.bool).numpy()
    masks[:, 20:40, 30:50] = True
    out = pipe("a red star moves right over a dark room", masks=masks, num_inference_steps=2, output_type="np")
    assert out.frames.shape == (1, 33, 64, 96, 3)

    # evaluate and report run on the same work folder and write every figure the docs quote
    from research.toy.evaluation import stage_evaluate
    from research.toy.report import write_report

    stages.stage_mvideo(work, config, alpha=0.0, progress=False)
    ev = stage_evaluate(work, config, progress=False)
    for key in ("miou_ceiling", "miou_a1", "miou_a0", "miou_vae_ceiling", "miou_seen_a1"):
        assert 0.0 <= ev[key]["miou"] <= 1.0, key
    assert ev["miou_ceiling"]["miou"] > 0.9  # the world's own video scores near 1 through the same tracker
    for key in ("text_base", "text_a1", "text_a0", "text_a1_nomask", "text_a0_nomask"):
        assert 0.0 <= ev[key]["accuracy"] <= 1.0 and ev[key]["n"] == 1, key
    assert 0.0 <= ev["long_a1"]["miou_16s"] <= 1.0
    done = json.loads((work / "vae" / "DONE.json").read_text())
    (work / "vae" / "DONE.json").write_text(json.dumps({**done, "trained_on": "NVIDIA H200 (--device cuda)"}))
    report = write_report(work, config, tmp_path / "docs")
    text = report.read_text()
    assert "(on NVIDIA H200 (--device cuda)) |" in text  # a stage trained elsewhere says where
    assert "text only (the paper's Table 4 protocol: no mask)" in text and "| mask mIoU (eq. 3)" in text
    assert "| same by held-out shape: alpha=2.5 / alpha=0 / VAE ceiling / tracker ceiling | " in text
    assert (tmp_path / "docs" / "toy-model-frames.png").stat().st_size > 1000


def test_changed_config_is_refused_and_set_overrides(tmp_path, capsys):
    work, config = prepare_work(tmp_path / "w", ToyConfig(**TINY))
    with pytest.raises(StageError, match="another toy config"):
        prepare_work(work, ToyConfig())
    _, changed = prepare_work(work, None, {"base_steps": 9})
    assert changed.base_steps == 9 and ToyConfig.load(work / "toy_config.json").base_steps == 9
    with pytest.raises(ValueError, match="unknown toy config keys"):
        prepare_work(work, None, {"base_stepz": 9})
    assert toy_main(["base", "--work", str(work), "--no-progress"]) == 2
    assert "run stage data first" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="key=value"):
        toy_main(["vae", "--work", str(work), "--set", "oops"])
    saved = (work / "toy_config.json").read_text()
    for bad in ("0", "-1", "lots"):
        assert toy_main(["mvideo", "--work", str(work), "--no-progress", "--set", f"consistency_weight={bad}"]) == 2
        err = capsys.readouterr().err
        assert "consistency_weight (alpha of the mvideo stage) must be a number > 0" in err and "mvideo-a0" in err
    for bad in ("0.5", "-2", "strong", "true", ".inf", ".nan"):
        assert toy_main(["evaluate", "--work", str(work), "--no-progress", "--set", f"mask_guidance_scale={bad}"]) == 2
        assert "mask_guidance_scale must be a number >= 1 (1 = off)" in capsys.readouterr().err
    for bad, shown in (("fp16", "'fp16'"), ("bfloat16", "'bfloat16'"), ("16", "16")):
        assert toy_main(["vae", "--work", str(work), "--no-progress", "--set", f"vae_precision={bad}"]) == 2
        assert f"vae_precision must be 'fp32' or 'bf16', got {shown}" in capsys.readouterr().err
    assert (work / "toy_config.json").read_text() == saved  # a refused value changes nothing


def test_vae_loss_charges_a_moving_error_not_a_steady_one():
    x = torch.zeros(1, 3, 4, 2, 2)
    weight = torch.ones(1, 1, 4, 2, 2)
    steady = torch.full_like(x, 0.1)  # the same error in every frame: a colour a bit off
    flicker = 0.1 * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 1, 4, 1, 1).expand_as(x)  # an error that moves
    base = 0.1**2 + 0.5 * 0.1  # MSE + L1/2
    torch.testing.assert_close(stages.vae_loss(x, x, weight, 2.0), torch.tensor(0.0))
    torch.testing.assert_close(stages.vae_loss(steady, x, weight, 0.0), torch.tensor(base))
    torch.testing.assert_close(stages.vae_loss(steady, x, weight, 2.0), torch.tensor(base))
    torch.testing.assert_close(stages.vae_loss(flicker, x, weight, 0.0), torch.tensor(base))
    torch.testing.assert_close(stages.vae_loss(flicker, x, weight, 2.0), torch.tensor(base + 2.0 * 0.2**2))
    # subject pixels weigh more in the temporal term too: a flicker on them costs more than on background
    heavy = weight.clone()
    heavy[..., 0, 0] = 8.0
    on_subject = torch.zeros_like(x)
    on_subject[..., 0, 0] = flicker[..., 0, 0]
    on_background = torch.zeros_like(x)
    on_background[..., 1, 1] = flicker[..., 1, 1]
    assert stages.vae_loss(on_subject, x, heavy, 2.0) > stages.vae_loss(on_background, x, heavy, 2.0)


def test_device_flag_errors_are_clear(tmp_path, capsys):
    work, _ = prepare_work(tmp_path / "w", ToyConfig(**TINY))
    assert toy_main(["base", "--work", str(work), "--device", "cuda", "--no-progress"]) == 2
    assert "--device only applies to the vae stage" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert toy_main(["vae", "--work", str(work), "--device", "cuda", "--no-progress"]) == 2
        assert "sees no CUDA GPU" in capsys.readouterr().err
        assert not list((work / "vae").glob("checkpoint-*.pt"))  # nothing trained, nothing half-written


def test_missing_toy_weights_say_how_to_make_them(tmp_path):
    from mvideo_core.weights import WeightsError
    from research.toy import load_toy_pipeline

    with pytest.raises(WeightsError, match="python -m research.toy run"):
        load_toy_pipeline(tmp_path)


def test_miou_by_shape_groups_each_clip_with_its_scene():
    from research.toy.report import miou_by_shape

    groups = miou_by_shape([0.0, 1.0, 2.0, 3.0])  # held-out scenes 0 and 3 are crosses, 1 and 2 rings
    assert groups == {"cross": [0.0, 3.0], "ring": [1.0, 2.0]}
    assert miou_by_shape([]) == {}
