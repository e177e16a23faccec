"""A toy MVideo trained on CPU on a procedural world of coloured shapes (see docs/toy-model.md).

`load_toy_pipeline()` returns a ready `MVideoPipeline` with the shipped toy weights (assets/toy): the studio offers it
when no real CogVideoX/MVideo weights are present. It knows only its world: 64x96, 33 frames at 8 fps, captions like
"a red star moves uphill over a sandy floor".
"""

from __future__ import annotations

from pathlib import Path

TOY_LABEL = "Toy MVideo (tiny CPU-trained demo model: coloured shapes at 64x96, not a real video model)"


def toy_weights_dir() -> Path:
    """assets/toy in this checkout (base_model/ in the CogVideoX layout + mvideo.safetensors)."""
    return Path(__file__).resolve().parents[2] / "assets" / "toy"


def load_toy_pipeline(weights_dir: str | Path | None = None, device: str | None = None):
    """The shipped toy model as an `MVideoPipeline`, through the normal loading code (`load_mvideo_pipeline`)."""
    from mvideo_core.weights import WeightsError, load_mvideo_pipeline

    folder = Path(weights_dir) if weights_dir is not None else toy_weights_dir()
    base, weights = folder / "base_model", folder / "mvideo.safetensors"
    if not (base / "model_index.json").is_file() or not weights.is_file():
        raise WeightsError(
            f"toy weights not found in {folder} (expected base_model/ and mvideo.safetensors); "
            "train them with `python -m mvideo_core.toy run` and `python -m mvideo_core.toy ship`"
        )
    pipe = load_mvideo_pipeline(base, weights, device=device)
    pipe.mvideo_metadata["label"] = TOY_LABEL
    return pipe
