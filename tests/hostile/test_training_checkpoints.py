"""Training checkpoints hold no pickles and resume reads none (issue 26 point 4): a crafted pickle dropped into a
checkpoint folder under every name accelerate would unpickle is never executed; damaged checkpoints are refused by
name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_training_trainer import make_config, write_tiny_cache  # noqa: E402

from mvideo_core.training.config import ConfigError  # noqa: E402
from mvideo_core.training.trainer import MVideoTrainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

# what accelerate's load_state would read from a checkpoint folder (custom objects with weights_only=False)
ACCELERATE_PICKLES = [
    "custom_checkpoint_0.pkl",
    "random_states_0.pkl",
    "optimizer.bin",
    "scheduler.bin",
    "sampler.bin",
    "pytorch_model.bin",
    "scaler.pt",
]


class _Payload:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[str, str, Path]:
    """(base model, cache, checkpoint-2 folder) of a 2-step run of the real trainer."""
    from accelerate.state import AcceleratorState, GradientState

    from mvideo_core.tiny import save_tiny_base_model

    root = tmp_path_factory.mktemp("ckpt")
    base = str(save_tiny_base_model(root / "base", "2b"))
    cache = str(write_tiny_cache(root / "cache", base))
    MVideoTrainer(make_config(root, base, cache, max_train_steps=2, checkpointing_steps=2)).train(progress=False)
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    return base, cache, root / "run" / "checkpoint-2"


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


def test_a_checkpoint_is_safetensors_and_json_only(checkpoint):
    _, _, folder = checkpoint
    assert sorted(p.name for p in folder.iterdir()) == ["optimizer.safetensors", "state.json", "trainable.safetensors"]
    state = json.loads((folder / "state.json").read_text())
    assert state["train_state"]["global_step"] == 2 and state["format"] == "mvideo-train-checkpoint"


def test_crafted_pickles_in_a_checkpoint_are_never_executed(tmp_path, checkpoint):
    base, cache, saved = checkpoint
    folder = _copy(saved, tmp_path / "checkpoint-2")
    marker = tmp_path / "marker"
    for name in ACCELERATE_PICKLES:
        torch.save(_Payload(marker), folder / name)
    # the payload is live: loading it the way accelerate's load_custom_state does runs it
    torch.load(folder / "custom_checkpoint_0.pkl", weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()

    cfg = make_config(tmp_path, base, cache, max_train_steps=3, resume_from_checkpoint=str(folder))
    trainer = MVideoTrainer(cfg)
    history = trainer.train(progress=False).history
    assert not marker.exists(), "resume executed a pickle from the checkpoint folder"
    assert trainer.state.global_step == 3 and len(history) == 1  # it did resume at step 2


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate_weights", "is damaged"),
        ("drop_state", "has no state.json"),
        ("state_not_json", "state.json is not valid JSON"),
        ("state_a_list", "is not an MVideo training checkpoint"),
        ("weights_of_other_rank", "was it made with another lora_rank"),
    ],
)
def test_a_damaged_checkpoint_is_refused_by_name(tmp_path, checkpoint, damage, message):
    from safetensors.torch import load_file, save_file

    base, cache, saved = checkpoint
    folder = _copy(saved, tmp_path / "checkpoint-2")
    weights = folder / "trainable.safetensors"
    if damage == "truncate_weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "drop_state":
        (folder / "state.json").unlink()
    elif damage == "state_not_json":
        (folder / "state.json").write_text('{"format": "mvideo-train')
    elif damage == "state_a_list":
        (folder / "state.json").write_text("[1, 2]")
    else:
        tensors = load_file(str(weights))
        save_file({k: v[..., :1].contiguous() if "lora_A" in k else v for k, v in tensors.items()}, str(weights))
    cfg = make_config(tmp_path, base, cache, max_train_steps=3, resume_from_checkpoint=str(folder))
    with pytest.raises(ConfigError, match=message):
        MVideoTrainer(cfg).setup()
