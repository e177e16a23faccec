"""A toy MVideo trained on CPU on a procedural world of coloured shapes (see docs/toy-model.md).

Research code, not part of the product: `python -m research.toy run --work runs/toy` trains and measures it from the
repository root, `... ship --to assets/toy` copies the weights that the studio offers when no real CogVideoX/MVideo
weights are present. The shipped folder (base_model/ in the CogVideoX layout + mvideo.safetensors) loads through the
ordinary `load_mvideo_pipeline` like any MVideo model. It knows only its world: 64x96, 33 frames at 8 fps, captions
like "a red star moves uphill over a sandy floor".
"""

from __future__ import annotations

from pathlib import Path

TOY_LABEL = "Toy MVideo (tiny CPU-trained demo model: coloured shapes at 64x96, not a real video model)"
SHIPPED_DIR = Path("assets") / "toy"  # relative to the repository root, where the toy's commands run


def load_toy_pipeline(weights_dir: str | Path = SHIPPED_DIR, device: str | None = None):
    """A shipped toy folder as an `MVideoPipeline`, through the normal loading code (`load_mvideo_pipeline`)."""
    from mvideo_core.weights import WeightsError, load_mvideo_pipeline

    folder = Path(weights_dir)
    base, weights = folder / "base_model", folder / "mvideo.safetensors"
    if not (base / "model_index.json").is_file() or not weights.is_file():
        raise WeightsError(
            f"toy weights not found in {folder} (expected base_model/ and mvideo.safetensors); "
            "train them with `python -m research.toy run` and `python -m research.toy ship`"
        )
    pipe = load_mvideo_pipeline(base, weights, device=device)
    pipe.mvideo_metadata["label"] = TOY_LABEL
    return pipe
