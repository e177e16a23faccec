"""What an object looks like to the classic tracker: colour and texture histograms of the object and of what surrounds
it, and the per-pixel log-likelihood ratio they give.

Each pixel gets one feature index: its RGB quantised to `bins` levels a channel, times a texture level (the local
gradient energy of the gray image, quantised to `texture_bins` levels). Histograms over that index are smoothed so
that colours next to seen ones count too; colours never seen on the object count as background.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

TEXTURE_EDGES = (6.0, 16.0, 40.0)  # gradient energy (gray levels per pixel) between texture levels


def feature_index(image: np.ndarray, gray: np.ndarray, bins: int = 16, texture: bool = True) -> np.ndarray:
    """uint8 [h, w, 3] RGB + its gray image -> int32 [h, w] feature index in [0, bins^3 * (len(TEXTURE_EDGES) + 1))."""
    shift = 8 - int(np.log2(bins))
    q = (image >> shift).astype(np.int32)
    idx = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
    if texture:
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        energy = cv2.blur(np.abs(gx) + np.abs(gy), (5, 5)) * 0.25  # ~ gray levels per pixel
        level = np.digitize(energy, TEXTURE_EDGES).astype(np.int32)
        idx = idx * (len(TEXTURE_EDGES) + 1) + level
    return idx


class AppearanceModel:
    """Object and background histograms over `feature_index`; `log_ratio(idx)` = log p(idx | object) - log p(idx |
    background), clipped to +-`clip`. `learn` mixes new pixels in at `rate` (1.0 replaces)."""

    def __init__(self, bins: int = 16, texture: bool = True, clip: float = 4.0):
        self.bins, self.texture, self.clip = bins, texture, clip
        self.levels = len(TEXTURE_EDGES) + 1 if texture else 1
        self.size = bins**3 * self.levels
        self.fg = np.zeros(self.size, np.float32)
        self.bg = np.zeros(self.size, np.float32)
        self.table = np.zeros(self.size, np.float32)

    def copy(self) -> AppearanceModel:
        other = AppearanceModel(self.bins, self.texture, self.clip)
        other.fg, other.bg, other.table = self.fg.copy(), self.bg.copy(), self.table.copy()
        return other

    def _hist(self, idx: np.ndarray) -> np.ndarray:
        """Normalised, smoothed histogram of feature indices (smoothing over the colour axes only)."""
        h = np.bincount(idx.ravel(), minlength=self.size).astype(np.float32)
        h = gaussian_filter(h.reshape(self.bins, self.bins, self.bins, self.levels), (0.7, 0.7, 0.7, 0.0))
        total = h.sum()
        return (h / total).ravel() if total > 0 else h.ravel()

    def learn(self, fg_idx: np.ndarray | None, bg_idx: np.ndarray | None, rate: float = 1.0, bg_rate=None) -> None:
        """Mix the histograms of object pixels `fg_idx` and background pixels `bg_idx` (1-D index arrays) in."""
        bg_rate = rate if bg_rate is None else bg_rate
        if fg_idx is not None and fg_idx.size:
            self.fg = (1 - rate) * self.fg + rate * self._hist(fg_idx) if self.fg.any() else self._hist(fg_idx)
        if bg_idx is not None and bg_idx.size:
            self.bg = (1 - bg_rate) * self.bg + bg_rate * self._hist(bg_idx) if self.bg.any() else self._hist(bg_idx)
        # floors: a feature never seen on the object is background-like; one never seen around it is neutral
        fg = self.fg + 1e-6
        bg = 0.9 * self.bg + 0.1 / self.size
        self.table = np.clip(np.log(fg) - np.log(bg), -self.clip, self.clip).astype(np.float32)

    def mix_from(self, others: list[AppearanceModel], weight: float) -> None:
        """Blend in the mean object histogram of `others` (other prompt frames of the same object) at `weight`."""
        if not others:
            return
        mean_fg = np.mean([o.fg for o in others], axis=0)
        self.fg = (1 - weight) * self.fg + weight * mean_fg
        self.learn(None, None)

    def log_ratio(self, idx: np.ndarray) -> np.ndarray:
        """float32 log-likelihood ratio (object vs background) of each feature index."""
        return self.table[idx]
