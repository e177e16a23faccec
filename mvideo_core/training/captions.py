"""Where a training clip's caption comes from: a sidecar `.txt`, a CSV, or a vision-language captioner.

The paper captions its clips with a VLM. We take the user's captions first (a `.txt` beside each video, or a CSV of
`video,caption`), and run a `transformers` image-text-to-text model only when asked (`--captioner MODEL_ID`). A video
with no caption and no captioner is an error with the fix, never an empty string in the dataset.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

# A captioner: frames uint8 [T, H, W, 3] of one clip -> caption.
Captioner = Callable[[np.ndarray], str]

VIDEO_COLUMNS = ("video", "path", "file", "filename", "name")
CAPTION_COLUMNS = ("caption", "text", "prompt")


class CaptionError(ValueError):
    """No caption could be found or made; the message says how to provide one."""


def read_caption_csv(path: str | Path) -> dict[str, str]:
    """A CSV with a header naming a video column (video/path/file) and a caption column (caption/text/prompt).
    Keys are the video's file name and its path as written, so either form matches."""
    path = Path(path)
    if not path.is_file():
        raise CaptionError(f"caption CSV {path} does not exist")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        video_col = next((c for c in VIDEO_COLUMNS if c in header), None)
        caption_col = next((c for c in CAPTION_COLUMNS if c in header), None)
        if video_col is None or caption_col is None:
            raise CaptionError(
                f"caption CSV {path} needs a header with a video column ({'/'.join(VIDEO_COLUMNS)}) and a caption "
                f"column ({'/'.join(CAPTION_COLUMNS)}); got {reader.fieldnames}"
            )
        names = {h.strip().lower(): h for h in reader.fieldnames or []}
        captions: dict[str, str] = {}
        for row in reader:
            video = (row.get(names[video_col]) or "").strip()
            caption = (row.get(names[caption_col]) or "").strip()
            if video and caption:
                captions[video] = caption
                captions[Path(video).name] = caption
    if not captions:
        raise CaptionError(f"caption CSV {path} has no rows with both a video and a caption")
    return captions


class CaptionSource:
    """Looks a video's caption up (sidecar .txt, then CSV), else runs the captioner, else raises CaptionError."""

    def __init__(self, csv_path: str | Path | None = None, captioner: Captioner | None = None):
        self.table = read_caption_csv(csv_path) if csv_path else {}
        self.captioner = captioner

    def lookup(self, video: str | Path) -> str | None:
        """The user's caption for this video, or None."""
        video = Path(video)
        sidecar = video.with_suffix(".txt")
        if sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                return text
        for key in (str(video), video.name):
            if key in self.table:
                return self.table[key]
        return None

    def has_any(self, videos: list[Path]) -> bool:
        return self.captioner is not None or any(self.lookup(v) is not None for v in videos)

    def caption(self, video: str | Path, frames: np.ndarray | None = None) -> str:
        """The caption of one clip of `video` (frames uint8 [T, H, W, 3] are needed only by a captioner)."""
        text = self.lookup(video)
        if text is not None:
            return text
        if self.captioner is None:
            raise CaptionError(
                f"no caption for {Path(video).name}: write {Path(video).with_suffix('.txt').name} beside it, add a "
                "row to a --captions CSV, or pass --captioner MODEL_ID to caption with a vision-language model"
            )
        if frames is None:
            raise CaptionError("the captioner needs the clip's frames")
        text = self.captioner(frames).strip()
        if not text:
            raise CaptionError(f"the captioner returned an empty caption for {Path(video).name}")
        return text


class TransformersCaptioner:
    """Captions a clip with a `transformers` image-text-to-text model (by hub id or local folder), shown a few
    evenly spaced frames. Loaded on first use, so building a dataset with sidecar captions never loads it."""

    def __init__(
        self,
        model_id: str,
        num_frames: int = 4,
        prompt: str = "Describe this video in one detailed paragraph: the subjects, their motion and the scene.",
        max_new_tokens: int = 120,
        device: str | None = None,
    ):
        self.model_id = model_id
        self.num_frames = num_frames
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.device = device
        self._pipe = None

    def _load(self):
        if self._pipe is None:
            from transformers import pipeline

            try:
                self._pipe = pipeline("image-text-to-text", model=self.model_id, device=self.device)
            except (OSError, ValueError) as err:
                raise CaptionError(
                    f"could not load the captioner {self.model_id!r} ({err}); give a local folder or a hub id of a "
                    "transformers image-text-to-text model, or provide captions as .txt sidecars or a CSV"
                ) from err
        return self._pipe

    def __call__(self, frames: np.ndarray) -> str:
        from PIL import Image

        pipe = self._load()
        idx = np.linspace(0, len(frames) - 1, num=min(self.num_frames, len(frames))).round().astype(int)
        content = [{"type": "image", "image": Image.fromarray(frames[i])} for i in idx]
        content.append({"type": "text", "text": self.prompt})
        out = pipe(
            text=[{"role": "user", "content": content}], max_new_tokens=self.max_new_tokens, return_full_text=False
        )
        return str(out[0]["generated_text"]).strip()
