"""Hostile start images (the generate CLI's --start-image, the studio's start / reference image): each refused with
one error that names the file and says what to do, the size its header declares checked before a pixel is decoded,
and the person's Generate form kept."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from harness import assert_clear_error, python_module, run_measured
from PIL import Image

from app.sessions import SessionStore
from app.steps import generate as generate_step
from app.steps.common import StudioError
from mvideo_core.budget import Budget
from mvideo_core.video_io import VideoError, read_image


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` RGB in a valid IHDR, followed by a few bytes of pixel data: a
    decompression bomb's shape, a few hundred bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pictures") / "good.png"
    Image.fromarray(np.arange(12 * 16 * 3, dtype=np.uint8).reshape(12, 16, 3)).save(path)
    return path


def test_a_good_picture_reads_as_rgb(good, tmp_path):
    rgb = read_image(good)
    assert rgb.dtype == np.uint8 and rgb.shape == (12, 16, 3)
    assert np.array_equal(rgb, np.asarray(Image.open(good)))
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, np.full((12, 16), 7, np.uint8)])).save(rgba)
    assert np.array_equal(read_image(rgba), rgb)  # its alpha dropped


def _bad(tmp_path: Path, good: Path, kind: str) -> tuple[Path, str]:
    path = tmp_path / f"{kind}.png"
    if kind == "missing":
        return path, "no picture at"
    if kind == "empty":
        path.write_bytes(b"")
        return path, "empty (0 bytes)"
    if kind == "text":
        path.write_text("not a picture at all\n" * 20)
        return path, "is not a picture (PNG, JPEG"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:60])
        return path, "could not be decoded"
    if kind == "over_budget":  # 9000 x 9000: under PIL's own bomb limit, over the studio's 8192 x 8192
        return png_header(path, 9000, 9000), "declares frames of 9000x9000 (81000000 pixels), over the limit"
    if kind == "bomb":  # 60000 x 60000 = 3.6e9 pixels
        return png_header(path, 60000, 60000), "declares too many pixels to decode (Image size (3600000000 pixels)"
    if kind == "zero_size":
        return png_header(path, 0, 0), "is not a picture"
    raise AssertionError(kind)


KINDS = ["missing", "empty", "text", "truncated", "over_budget", "bomb", "zero_size"]


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", KINDS)
def test_a_bad_picture_is_one_clear_error(tmp_path, good, kind):
    path, message = _bad(tmp_path, good, kind)
    with pytest.raises(VideoError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_image(path, Budget())
    assert path.name in str(err.value) or kind == "missing"


@pytest.mark.bad_input
def test_a_smaller_budget_refuses_a_picture_a_default_one_reads(good):
    with pytest.raises(VideoError, match="over the limit of 100 pixels a frame .--max-pixels.; use a smaller picture"):
        read_image(good, Budget(max_pixels=100))


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["bomb", "over_budget"])
def test_the_generate_cli_refuses_a_bomb_start_image_before_decoding_it(tmp_path, good, kind):
    """A few hundred bytes that declare 3.6e9 (or 8.1e7) pixels: exit 2, the message, no output, a small peak."""
    path, message = _bad(tmp_path, good, kind)
    out = tmp_path / "out"
    run = run_measured(
        python_module(
            "mvideo_core.generate", "--prompt", "a dog", "--tiny-random", "--out", out, "--start-image", path
        )
    )
    assert_clear_error(run, message, code=2, max_rss_mb=1500)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["text", "truncated", "over_budget"])
def test_the_studio_refuses_a_bad_start_image_and_keeps_the_form(tmp_path, good, kind):
    """The upload handler and Generate's check say what was wrong; the prompt and the last good picture stay."""
    from app.steps import video as video_step
    from mvideo_core.video_io import write_video
    from tests.test_app_adapters import make_engines
    from tests.test_app_projects import _frames

    engines = make_engines(tmp_path)
    session = SessionStore().get("s")
    video_step.load_video(engines, session, write_video(tmp_path / "walk.mp4", _frames(), 8.0))
    generate_step.save_draft(session, prompt="a fox")
    generate_step.keep_start_image(session, str(good))
    path, message = _bad(tmp_path, good, kind)
    with pytest.raises(StudioError, match="start image: .*" + message.split("(")[0]):
        generate_step.keep_start_image(session, str(path))
    saved = session.project.meta()["generation"]
    assert saved["prompt"] == "a fox" and saved["start_image"] == "start_image.png"
    kept = generate_step.saved_start_image(session.project, saved)
    assert np.array_equal(np.asarray(Image.open(kept)), read_image(good))  # the last good picture, unchanged
    with pytest.raises(StudioError, match="start image: "):
        generate_step.read_picture(str(path))
