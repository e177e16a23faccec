"""The weight-free tracker: GrabCut on prompt frames; DIS optical flow, colour + texture models to carry masks.

Each prompt is carried both ways up to its neighbouring prompts. One step to the next frame warps the previous mask
with dense optical flow (the prior), scores every pixel near it with the object's colour and texture histograms
against its surroundings' (learned on the prompt frame, updated only on confident frames), and keeps the pixels where
both agree. A lost object is searched for over the whole frame with the same model. Frames between two prompts fuse
the two directions' masks, weighted by their scores. Every frame gets a score (see `_score`); a collapsed or empty
mask scores low and is reported `uncertain` or `lost`, never `tracked`.

It is the embedded default when no SAM2 weights are on the machine, and says so in every `MaskSet` it returns
(`meta["tracker"]`). Work happens at a reduced resolution (`work_max_side`); masks come back at video resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mvideo_core.extraction.appearance import AppearanceModel, feature_index
from mvideo_core.extraction.base import (
    LOST_BELOW_SCORE,
    TRACKED_MIN_SCORE,
    Prompt,
    TrackedObject,
    Tracker,
    TrackerSession,
)

CLASSIC_DESCRIPTION = (
    "classic (weight-free fallback: GrabCut + DIS optical flow + colour/texture models; no SAM2 weights used)"
)


@dataclass
class ClassicSettings:
    """Speed/accuracy knobs of `ClassicTracker` (pixel sizes are at the work resolution)."""

    work_max_side: int = 320  # flow and masks are computed with the longer side at most this
    refine_max_side: int = 160  # GrabCut on a prompt frame runs on the object's band resized to at most this
    carry_refine_max_side: int = 128  # ... and on the other frames (GrabCut is most of a frame's cost)
    band: int = 6  # half width of the uncertain band around a refined mask, work pixels
    grabcut_iters: int = 2
    click_radius: int = 3
    click_reach: float = 0.1  # a click's region (similar colours around it) reaches this fraction of the longer side
    click_tolerance: int = 28  # ... and holds colours within this of the clicked one (per RGB channel)
    min_area: int = 6  # a mask smaller than this (work pixels) is empty
    # a box prompt whose GrabCut keeps less than this fraction of the box is segmented again from a box grown by
    # `box_retry_grow` of its shorter side (result still cut to the user's box): when the object spills over the box
    # edge, its colours sit in the sure-background ring and teach GrabCut that the object is background
    box_retry_below: float = 0.05
    box_retry_grow: float = 0.3
    # carrying a mask to the next frame
    grow: int = 5  # the mask may reach this far beyond the flow-warped previous mask, work pixels
    prior_weight: float = 2.0  # log-odds of the flow-warped mask deep inside / outside it (colour evidence: +-4)
    colour_bins: int = 16  # per RGB channel
    texture: bool = True  # gradient-energy levels in the appearance model
    learn_rate: float = 0.1  # how fast a confident frame updates the object's model
    background_rate: float = 0.3  # ... and its surroundings' model
    confident: float = 0.75  # frames scoring at least this update the models
    flow_sigma: float = 1.5  # blur of the warped mask (flow error), work pixels


def _grabcut(
    image: np.ndarray, trimap: np.ndarray, iters: int, fg_model: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """GrabCut on an RGB crop with an initial trimap (cv2.GC_* values); returns (bool foreground, fg colour model).

    With `fg_model` (learned on the prompt frame) the foreground colours stay frozen and only the background model
    is learned from this frame, so the mask cannot drift onto an occluder or the background."""
    if not ((trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD)).any():
        return np.zeros(trimap.shape, bool), fg_model
    if not ((trimap == cv2.GC_BGD) | (trimap == cv2.GC_PR_BGD)).any():
        return (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD), fg_model
    mask = trimap.copy()
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models with k-means on OpenCV's global RNG: without a fixed seed a frame's mask (and an
    # eq. 3 score) depended on what was segmented before it in the process
    cv2.setRNGSeed(0)
    try:
        if fg_model is None:
            cv2.grabCut(image, mask, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
        else:
            cv2.grabCut(image, mask, None, bgd, fgd, 0, cv2.GC_INIT_WITH_MASK)  # learn this frame's background
            fgd = fg_model.copy()
            cv2.grabCut(image, mask, None, bgd, fgd, 1, cv2.GC_EVAL_FREEZE_MODEL)
    except cv2.error:  # degenerate colour statistics (e.g. a flat crop): keep the initial guess
        return (trimap == cv2.GC_FGD) | (trimap == cv2.GC_PR_FGD), fg_model
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD), fgd


def _colour_distance(pixels: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """RGB distance of each of `pixels` [N, 3] to the nearest of `colours` [M, 3] (at most ~256 of them sampled)."""
    colours = colours.astype(np.float32)[:: max(1, len(colours) // 256)]
    return np.sqrt(((pixels.astype(np.float32)[:, None] - colours[None]) ** 2).sum(-1)).min(1)


def _box_trimap(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, tol: float = 24.0) -> np.ndarray:
    """GrabCut trimap of a box prompt: sure background outside the box, probable object inside, except regions the
    object encloses (a ring's hole) whose colour matches the background just around the box: they start as probable
    background, so GrabCut's first colour model holds the object's colours only. Background-coloured regions that
    touch the box edge are left to GrabCut as before."""
    h, w = image.shape[:2]
    trimap = np.full((h, w), cv2.GC_BGD, np.uint8)
    trimap[y0:y1, x0:x1] = cv2.GC_PR_FGD
    area = (x1 - x0) * (y1 - y0)
    if area < 16:  # too small for colour models: take the box itself
        trimap[y0:y1, x0:x1] = cv2.GC_FGD
        return trimap
    m = max(2, min(x1 - x0, y1 - y0) // 4)
    around = np.zeros((h, w), bool)
    around[max(y0 - m, 0) : y1 + m, max(x0 - m, 0) : x1 + m] = True
    around[y0:y1, x0:x1] = False
    if around.sum() < 8:
        return trimap
    near = (_colour_distance(image[y0:y1, x0:x1].reshape(-1, 3), image[around]) < tol).reshape(y1 - y0, x1 - x0)
    _, labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    near &= ~np.isin(labels, edge)
    # enough object-coloured pixels must be left to learn the object's colours
    if near.any() and (~near).sum() >= max(8, 0.2 * area):
        trimap[y0:y1, x0:x1][near] = cv2.GC_PR_BGD
    return trimap


def _stands_out(image: np.ndarray, region: np.ndarray, trimap: np.ndarray, tol: float = 48.0) -> bool:
    """Whether most pixels of `region` are far (> tol in RGB) from every colour of the sure background next to the
    trimap's probable area: an object, not a patch of the background's own texture."""
    unsure = (trimap != cv2.GC_BGD).astype(np.uint8)
    ring = (cv2.dilate(unsure, np.ones((9, 9), np.uint8)) > 0) & (trimap == cv2.GC_BGD)
    if ring.sum() < 8:
        return True  # nothing around to compare with (the box fills the frame)
    px = image[region]
    return bool(np.median(_colour_distance(px[:: max(1, len(px) // 1024)], image[ring])) > tol)


DIS_MIN_SIDE = 16  # OpenCV's DIS flow fails (cv2.error) on images under ~8 px a side: pad smaller frames to this


def dis_flow(dis: cv2.DISOpticalFlow, image: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Dense flow from gray `image` to `other` (uint8 [h, w]): for each pixel of `image`, where it is in `other`.

    float32 [h, w, 2]. Frames narrower or lower than `DIS_MIN_SIDE` are edge-padded for DIS and the flow cropped back,
    so a 2-7 px wide video tracks instead of raising cv2.error."""
    h, w = image.shape
    ph, pw = max(0, DIS_MIN_SIDE - h), max(0, DIS_MIN_SIDE - w)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        other = cv2.copyMakeBorder(other, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return dis.calc(image, other, None)[:h, :w]


def _region_grow(image: np.ndarray, x: int, y: int, reach: int, tolerance: int) -> np.ndarray:
    """Pixels connected to (x, y) whose colour is within `tolerance` of its colour, at most `reach` px away: the part
    of the image a click points at. bool [h, w]; always holds (x, y)."""
    h, w = image.shape[:2]
    flood = np.ones((h + 2, w + 2), np.uint8)  # floodFill does not cross non-zero mask pixels
    cv2.circle(flood, (x + 1, y + 1), max(1, reach), 0, -1)
    flood[y + 1, x + 1] = 0
    tol = (tolerance,) * 3
    flags = 4 | cv2.FLOODFILL_FIXED_RANGE | cv2.FLOODFILL_MASK_ONLY | (2 << 8)
    cv2.floodFill(np.ascontiguousarray(image), flood, (x, y), 0, tol, tol, flags)
    return flood[1:-1, 1:-1] == 2


def _keep_connected(mask: np.ndarray, core: np.ndarray) -> np.ndarray:
    """The components of `mask` that touch `core` (bool, same shape)."""
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    if n <= 2:
        return mask if (mask & core).any() else np.zeros_like(mask)
    keep = np.unique(labels[core & mask])
    keep = keep[keep > 0]
    return np.isin(labels, keep)


def _fill_small_holes(mask: np.ndarray, max_fraction: float = 0.02) -> np.ndarray:
    """Fill holes smaller than `max_fraction` of the mask's area (speckle left by texture), keep larger ones."""
    inv = (~mask).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    if n <= 2:
        return mask
    h, w = mask.shape
    limit = max(4, max_fraction * mask.sum())
    out = mask.copy()
    for k in range(1, n):
        x, y, bw, bh, area = stats[k]
        if area <= limit and x > 0 and y > 0 and x + bw < w and y + bh < h:
            out[labels == k] = True
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys = np.flatnonzero(mask.any(1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _grown(box: tuple[int, int, int, int], by: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    h, w = shape
    return max(x0 - by, 0), max(y0 - by, 0), min(x1 + by, w), min(y1 + by, h)


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels more than `inner` and at most `outer` px from `mask`: the object's immediate surroundings."""
    out = np.zeros_like(mask)
    box = _bbox(mask)
    if box is None:
        return out
    x0, y0, x1, y1 = _grown(box, outer + 1, mask.shape)
    dist = cv2.distanceTransform((~mask[y0:y1, x0:x1]).view(np.uint8), cv2.DIST_L2, 3)
    out[y0:y1, x0:x1] = (dist > inner) & (dist <= outer)
    return out


def _object_motion(forward: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The object's motion to the next frame: a similarity transform (2x3, this frame's px -> the next's) fitted with
    RANSAC to the forward flow at the pixels of `mask` (bool, this frame), and the fraction of them that move with it
    (flow agreement). With too few pixels: the mean flow, agreement 1."""
    eroded = cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ys, xs = np.nonzero(eroded if eroded.sum() >= 12 else mask)
    if len(ys) == 0:
        return np.float32([[1, 0, 0], [0, 1, 0]]), 1.0
    pick = rng.choice(len(ys), min(len(ys), 400), replace=False)
    src = np.stack([xs[pick], ys[pick]], -1).astype(np.float32)
    dst = src + forward[ys[pick], xs[pick]]
    if len(ys) >= 12:
        m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
        if m is not None and inliers is not None and inliers.mean() >= 0.2:
            agreement = float(inliers.mean())
            scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
            # an object sliding behind something looks like it shrinks (its hidden edge stops): trust a scale change
            # only where most of the object moves as one, and at most a few percent a frame
            kept = float(np.clip(scale, 0.96, 1.04)) if agreement >= 0.7 else 1.0
            centre = src[inliers.ravel() > 0].mean(0)
            target = m[:, :2] @ centre + m[:, 2]  # where the moving part's centre goes: kept
            m[:, :2] *= kept / max(scale, 1e-6)
            m[:, 2] = target - m[:, :2] @ centre
            return m.astype(np.float32), agreement
    shift = (dst - src).mean(0)
    return np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), 1.0


@dataclass
class _Sweep:
    """The running state of one prompt carried one way: its model, front mask and what the mask is expected to be."""

    origin: int
    model: AppearanceModel
    mask: np.ndarray  # bool [h, w] at work resolution, on frame `front`
    front: int
    ref_area: float  # the object's area on the prompt frame
    fit0: float  # fraction of the prompt mask whose features the model calls object
    shape: np.ndarray  # bool [h, w]: the object's whole extent, hidden parts included, moved with the object
    scale: float = 1.0  # expected area / ref_area, from the flow since the prompt frame
    centre: tuple[float, float] = (0.0, 0.0)  # last seen centre (work px), for re-detection
    agreement: float = 1.0  # flow agreement of the last step
    velocity: np.ndarray | None = None  # the centre's motion a frame while in view (x, y), smoothed
    gmm: np.ndarray | None = None  # GrabCut's object colour model from the prompt frame (frozen)
    lost_for: int = 0  # frames since the object was last seen


class ClassicTracker(Tracker):
    """OpenCV-only tracker with the same session API as `Sam2Tracker`; several objects, both directions."""

    name = "classic"
    description = CLASSIC_DESCRIPTION
    both_sides = True

    def __init__(self, settings: ClassicSettings | None = None):
        self.settings = settings or ClassicSettings()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    @property
    def input_max_side(self) -> int:
        return self.settings.work_max_side

    # -- session ---------------------------------------------------------------------------------------------
    def _init_session(self, session: TrackerSession) -> None:
        h, w = session.size
        scale = min(1.0, self.settings.work_max_side / max(h, w))
        wh, ww = max(2, round(h * scale)), max(2, round(w * scale))
        session.engine.update(scale=scale, work_size=(wh, ww), small={}, flow={})
        session.meta["work_size"] = [wh, ww]

    def _cached(self, session: TrackerSession, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame t at work resolution: (RGB uint8 [h, w, 3], gray uint8 [h, w], feature index int32 [h, w]); a small
        cache keeps memory flat on long videos."""
        cache = session.engine["small"]
        if t not in cache:
            if len(cache) > 6:
                cache.pop(next(iter(cache)))
            wh, ww = session.engine["work_size"]
            frame = session.frames[t]
            small = frame if (wh, ww) == frame.shape[:2] else cv2.resize(frame, (ww, wh), interpolation=cv2.INTER_AREA)
            gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
            s = self.settings
            cache[t] = (small, gray, feature_index(small, gray, s.colour_bins, s.texture))
        return cache[t]

    def _small(self, session: TrackerSession, t: int) -> np.ndarray:
        return self._cached(session, t)[0]

    def _flow(self, session: TrackerSession, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
        """(backward, forward) flow, float32 [h, w, 2] each: for each pixel of `dst` the offset to where it was in
        `src`, and for each pixel of `src` the offset to where it goes in `dst`."""
        key = (src, dst)
        cache = session.engine["flow"]
        if key not in cache:
            cache.clear()
            a, b = self._cached(session, dst)[1], self._cached(session, src)[1]
            cache[key] = (dis_flow(self._dis, a, b), dis_flow(self._dis, b, a))
        return cache[key]

    def _to_video(self, session: TrackerSession, work_mask: np.ndarray) -> np.ndarray:
        h, w = session.size
        if work_mask.shape == (h, w):
            return work_mask.copy()
        if not work_mask.any():
            return np.zeros((h, w), bool)
        up = cv2.resize(work_mask.view(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_LINEAR)
        return up > 127

    def _to_work(self, session: TrackerSession, mask: np.ndarray) -> np.ndarray:
        wh, ww = session.engine["work_size"]
        if mask.shape == (wh, ww):
            return mask.copy()
        return cv2.resize(mask.view(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST) > 0

    # -- prompt frames -----------------------------------------------------------------------------------------
    def _refine(
        self, small: np.ndarray, trimap: np.ndarray, fg_model: np.ndarray | None = None, max_side: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """GrabCut on the bounding box of the uncertain region, resized to at most `refine_max_side` (with
        `fg_model`: the object's colours frozen, only the background's learned on this frame)."""
        s = self.settings
        unsure = (trimap == cv2.GC_PR_FGD) | (trimap == cv2.GC_PR_BGD) | (trimap == cv2.GC_FGD)
        box = _bbox(unsure)
        if box is None:
            return np.zeros(trimap.shape, bool), None
        x0, y0, x1, y1 = _grown(box, 2 * s.band, trimap.shape)
        crop_img, crop_tri = small[y0:y1, x0:x1], trimap[y0:y1, x0:x1]
        ch, cw = crop_tri.shape
        f = min(1.0, (max_side or s.refine_max_side) / max(ch, cw))
        if f < 1.0:
            rh, rw = max(2, round(ch * f)), max(2, round(cw * f))
            img_r = cv2.resize(crop_img, (rw, rh), interpolation=cv2.INTER_AREA)
            tri_r = cv2.resize(crop_tri, (rw, rh), interpolation=cv2.INTER_NEAREST)
            fg_r, model = _grabcut(img_r, tri_r, s.grabcut_iters, fg_model)
            fg = cv2.resize(fg_r.astype(np.uint8) * 255, (cw, ch), interpolation=cv2.INTER_LINEAR) > 127
            # keep hard labels exact where the user (or the trimap) fixed them
            fg[crop_tri == cv2.GC_FGD] = True
            fg[crop_tri == cv2.GC_BGD] = False
        else:
            fg, model = _grabcut(crop_img, crop_tri, s.grabcut_iters, fg_model)
        out = np.zeros(trimap.shape, bool)
        out[y0:y1, x0:x1] = fg
        return out, model

    def _band_trimap(self, guess: np.ndarray) -> np.ndarray:
        """Trimap around a mask guess: probable fg inside, probable bg in a band outside, sure bg further out."""
        k = 2 * self.settings.band + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        outer = cv2.dilate(guess.view(np.uint8), kernel) > 0
        trimap = np.full(guess.shape, cv2.GC_BGD, np.uint8)
        trimap[outer] = cv2.GC_PR_BGD
        trimap[guess] = cv2.GC_PR_FGD
        return trimap

    def _click_regions(
        self, small: np.ndarray, prompt: Prompt, scale: float
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
        """(pixels the positive clicks point at, pixels the negative ones point at, clicks as work (x, y, label))."""
        h, w = small.shape[:2]
        pos, neg = np.zeros((h, w), bool), np.zeros((h, w), bool)
        clicks = []
        if prompt.points is None:
            return pos, neg, clicks
        reach = max(2, round(self.settings.click_reach * max(h, w)))
        smooth = cv2.GaussianBlur(small, (0, 0), 1.5)  # texture would stop the region at every grain
        for (x, y), label in zip(prompt.points * scale, prompt.labels):
            xi, yi = min(int(x), w - 1), min(int(y), h - 1)
            region = _region_grow(smooth, xi, yi, reach, self.settings.click_tolerance)
            if label == 1:
                pos |= region
                neg &= ~region  # a later click wins
            else:
                neg |= region
                pos &= ~region
            clicks.append((xi, yi, int(label)))
        return pos, neg, clicks

    def _segment_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> tuple[np.ndarray, float]:
        prompt = obj.prompts[frame_idx]
        s = self.settings
        scale = session.engine["scale"]
        small = self._small(session, frame_idx)
        wh, ww = small.shape[:2]
        prompt_data = obj.state.setdefault("prompt", {})
        prior, box_px = None, None
        if obj.done[frame_idx]:
            old = prompt_data.get(frame_idx)
            prior = old["work"] if old is not None else self._to_work(session, obj.masks[frame_idx])
        pos, neg, clicks = self._click_regions(small, prompt, scale)
        if prompt.box is not None and (prior is None or frame_idx in obj.state.get("box_frames", set())):
            # a (new) box: GrabCut's rectangle initialisation
            x0, y0, x1, y1 = (prompt.box * scale).tolist()
            x0, y0 = int(np.floor(x0)), int(np.floor(y0))
            x1, y1 = min(int(np.ceil(x1)), ww), min(int(np.ceil(y1)), wh)
            x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
            trimap = _box_trimap(small, x0, y0, x1, y1)
            obj.state.setdefault("box_frames", set()).add(frame_idx)
            box_px = (x0, y0, x1, y1)
        elif prior is not None:
            trimap = self._band_trimap(prior | pos)
            reach = max(2, round(s.click_reach * max(wh, ww)))
            for x, y, label in clicks:  # GrabCut may take in more of what a positive click points at
                if label == 1:
                    around = np.zeros((wh, ww), np.uint8)
                    cv2.circle(around, (x, y), reach, 1, -1)
                    trimap[(around > 0) & (trimap == cv2.GC_BGD)] = cv2.GC_PR_BGD
        else:
            # clicks only on a new object: probable object where the positive clicks point, probable background in
            # a window a third of the frame wide around them, sure background beyond
            half = max(wh, ww) // 6
            xy = np.array([(x, y) for x, y, label in clicks if label == 1])
            x0, y0 = np.maximum(xy.min(0) - half, 0)
            x1, y1 = np.minimum(xy.max(0) + half + 1, (ww, wh))
            trimap = np.full((wh, ww), cv2.GC_BGD, np.uint8)
            trimap[y0:y1, x0:x1] = cv2.GC_PR_BGD
            for x, y in xy:
                cv2.circle(trimap, (int(x), int(y)), max(2, half // 2), int(cv2.GC_PR_FGD), -1)
            trimap[pos] = cv2.GC_PR_FGD
        trimap[neg & (trimap != cv2.GC_BGD)] = cv2.GC_PR_BGD
        for x, y, label in clicks:
            value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
            cv2.circle(trimap, (x, y), s.click_radius, int(value), -1)
        work, gmm = self._refine(small, trimap)
        if prompt.box is not None:
            x0, y0, x1, y1 = (prompt.box * scale).tolist()
            box = np.zeros_like(work)
            box[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
            work &= box
            if box_px is not None and work.sum() < s.box_retry_below * box.sum():
                work, gmm = self._retry_grown_box(small, box_px, clicks, box, (work, gmm))
        # a click always changes the mask where it was made: what it points at joins or leaves the object
        work = (work | pos) & ~neg
        video = self._to_video(session, work)
        h, w = session.size
        r = max(1, round(s.click_radius / max(scale, 1e-6) / 3))
        for (x, y), label in zip(*((prompt.points, prompt.labels) if prompt.points is not None else ([], []))):
            disc = np.zeros((h, w), np.uint8)
            cv2.circle(disc, (min(int(x), w - 1), min(int(y), h - 1)), r, 1, -1)
            video[disc > 0] = bool(label)
        work = self._to_work(session, video) if video.shape != work.shape else video.copy()
        prompt_data[frame_idx] = self._prompt_model(session, frame_idx, work, neg)
        prompt_data[frame_idx]["gmm"] = gmm
        score = 1.0 if work.sum() >= s.min_area or video.any() else 0.0
        for store in (obj.state.setdefault("fwd", {}), obj.state.setdefault("bwd", {})):
            store[frame_idx] = (np.packbits(work), score, 0)
        return video, score

    def _retry_grown_box(
        self,
        small: np.ndarray,
        box_px: tuple[int, int, int, int],
        clicks: list[tuple[int, int, int]],
        box: np.ndarray,
        first: tuple[np.ndarray, np.ndarray | None],
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """GrabCut again from the box grown on every side (the object's spill over the box edge is then probable
        object, not sure background); the result is cut to the user's box. Keeps the first try if this one finds
        nothing that stands out from the background around it."""
        x0, y0, x1, y1 = box_px
        wh, ww = small.shape[:2]
        g = max(1, round(self.settings.box_retry_grow * min(x1 - x0, y1 - y0)))
        trimap = _box_trimap(small, max(x0 - g, 0), max(y0 - g, 0), min(x1 + g, ww), min(y1 + g, wh))
        for x, y, label in clicks:
            cv2.circle(trimap, (x, y), self.settings.click_radius, int(cv2.GC_FGD if label else cv2.GC_BGD), -1)
        work, gmm = self._refine(small, trimap)
        work &= box
        if not work.any() or not _stands_out(small, work, trimap):
            return first
        return work, gmm

    def _prompt_model(self, session: TrackerSession, t: int, work: np.ndarray, extra_bg: np.ndarray) -> dict:
        """What a prompt frame teaches: the appearance model (object pixels vs a ring around them, plus pixels the
        user marked as background), the object's area and how well the model explains its own mask."""
        s = self.settings
        _, _, feat = self._cached(session, t)
        model = AppearanceModel(s.colour_bins, s.texture)
        area = int(work.sum())
        if area:
            box = _bbox(work)
            size = max(box[2] - box[0], box[3] - box[1])
            ring = _ring(work, 2, max(6, size // 2)) | (extra_bg & ~work)
            model.learn(feat[work], feat[ring])
            fit0 = float((model.log_ratio(feat[work]) > 0).mean())
        else:
            fit0 = 1.0
        return {"work": work, "model": model, "area": area, "fit0": max(fit0, 0.3)}

    # -- carrying ------------------------------------------------------------------------------------------------
    def _sweep(self, session: TrackerSession, obj: TrackedObject, src: int, reverse: bool) -> _Sweep:
        """The sweep that carries `obj` from `src`: started afresh on a prompt frame."""
        sweeps = obj.state.setdefault("sweeps", {})
        key = bool(reverse)
        sweep = sweeps.get(key)
        if src in obj.prompts or sweep is None or sweep.front != src:
            origin = src if src in obj.prompts else self._origin(obj, src, reverse)
            data = obj.state["prompt"][origin]
            model = data["model"].copy()
            others = [d["model"] for p, d in obj.state["prompt"].items() if p != origin]
            model.mix_from([o for o in others], weight=0.3)  # every prompt frame teaches the model
            mask = self._front_mask(session, obj, src, reverse)
            box = _bbox(mask)
            centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2) if box else (0.0, 0.0)
            sweep = _Sweep(origin, model, mask, src, max(data["area"], 1), data["fit0"], mask.copy(), 1.0, centre)
            sweep.gmm = data.get("gmm")
            sweeps[key] = sweep
        return sweep

    @staticmethod
    def _origin(obj: TrackedObject, t: int, reverse: bool) -> int:
        """The prompt frame whose sweep reaches frame t going forward (or backward)."""
        frames = sorted(obj.prompts)
        before = [p for p in frames if p <= t]
        after = [p for p in frames if p >= t]
        if reverse:
            return after[0] if after else frames[-1]
        return before[-1] if before else frames[0]

    def _front_mask(self, session: TrackerSession, obj: TrackedObject, t: int, reverse: bool) -> np.ndarray:
        store = obj.state.get("bwd" if reverse else "fwd", {})
        wh, ww = session.engine["work_size"]
        if t in store:
            return np.unpackbits(store[t][0], count=wh * ww).reshape(wh, ww).view(bool)
        return self._to_work(session, obj.masks[t])

    def _carry(self, session: TrackerSession, src: int, dst: int, obj_ids: list[int], reverse: bool) -> None:
        for obj_id in obj_ids:
            obj = session.objects[obj_id]
            sweep = self._sweep(session, obj, src, reverse)
            work, score = self._step(session, sweep, src, dst)
            if score < LOST_BELOW_SCORE:  # too little of it is left to be the object: lost, and said so
                work, score = np.zeros_like(work), 0.0
            sweep.mask, sweep.front = work, dst
            sweep.lost_for = 0 if work.any() else sweep.lost_for + 1
            store = obj.state.setdefault("bwd" if reverse else "fwd", {})
            store[dst] = (np.packbits(work), score, abs(dst - sweep.origin))
            mask, fused = self._fused(session, obj, dst, sweep.model)
            obj.set_mask(dst, self._to_video(session, mask), fused)

    def _fused(self, session: TrackerSession, obj: TrackedObject, t: int, model: AppearanceModel) -> tuple:
        """Frame t's mask from the sweeps that reached it (forward from the prompt before, backward from the one
        after): pixels both masks hold stay; a pixel only one holds is decided by a vote of the two sweeps (weighted
        by their scores, nearer prompts counting more) and the appearance model. The score is the weighted mean
        score times the directions' agreement (0.5 + 0.5 IoU of their masks)."""
        wh, ww = session.engine["work_size"]
        entries = [obj.state.get(k, {}).get(t) for k in ("fwd", "bwd")]
        entries = [e for e in entries if e is not None]
        masks = [np.unpackbits(bits, count=wh * ww).reshape(wh, ww).view(bool) for bits, _, _ in entries]
        if len(entries) == 1:
            return masks[0], entries[0][1]
        weights = [max(score, 0.01) / (1.0 + dist / 25.0) for _, score, dist in entries]
        total = sum(weights)
        score = sum(w * e[1] for w, e in zip(weights, entries)) / total
        both, either = masks[0] & masks[1], masks[0] | masks[1]
        disputed = either & ~both
        out = both.copy()
        if disputed.any():
            vote = (weights[0] * masks[0][disputed] + weights[1] * masks[1][disputed]) / total
            _, _, feat = self._cached(session, t)
            colour = 1.0 / (1.0 + np.exp(-model.log_ratio(feat[disputed])))
            out[disputed] = vote + colour > 1.0
        agreement = both.sum() / max(either.sum(), 1)
        return out, score * (0.5 + 0.5 * agreement)

    def _step(self, session: TrackerSession, sweep: _Sweep, src: int, dst: int) -> tuple[np.ndarray, float]:
        """Carry the sweep's mask from frame `src` to `dst`: (work mask, score)."""
        s = self.settings
        wh, ww = session.engine["work_size"]
        prev = sweep.mask
        if prev.sum() < s.min_area and sweep.shape.sum() < s.min_area:
            return self._redetect(session, sweep, dst)
        flow, forward = self._flow(session, src, dst)
        gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(wh, dtype=np.float32))
        warped = cv2.remap(prev.view(np.uint8).astype(np.float32), gx + flow[..., 0], gy + flow[..., 1],
                           cv2.INTER_LINEAR, borderValue=0.0)  # fmt: skip
        # the object's own motion (measured on its pixels, robust to the background's flow at its edges) moves its
        # whole shape, hidden parts included; while most of it is hidden, the last motion measured in view does
        motion, sweep.agreement = _object_motion(forward, prev, np.random.default_rng(dst))
        in_view = prev.sum() >= 0.85 * sweep.shape.sum() and sweep.agreement >= 0.4
        centre = np.float32(sweep.centre)
        step = motion[:, :2] @ centre + motion[:, 2] - centre  # where the motion takes the object's centre
        before = sweep.velocity
        if in_view or sweep.velocity is None:
            sweep.velocity = step if sweep.velocity is None else 0.5 * (sweep.velocity + step)
            shape_motion = motion
        else:  # mostly hidden: the shape keeps the velocity it had in view
            shape_motion = np.float32([[1, 0, sweep.velocity[0]], [0, 1, sweep.velocity[1]]])
        sweep.scale *= float(abs(np.linalg.det(shape_motion[:, :2])))
        moved = cv2.warpAffine(prev.view(np.uint8).astype(np.float32), motion, (ww, wh), flags=cv2.INTER_LINEAR)
        shape = cv2.warpAffine(
            sweep.shape.view(np.uint8).astype(np.float32), shape_motion, (ww, wh), flags=cv2.INTER_LINEAR
        )
        sweep.shape = shape > 0.5
        # hidden parts, and where the object would be at its last velocity: neither object nor background
        prior = np.maximum(0.5 * (warped + moved), 0.5 * shape)
        if before is not None and np.hypot(*(before - step)) > 2.0:
            coasting = np.float32([[1, 0, before[0]], [0, 1, before[1]]])
            ahead = cv2.warpAffine(prev.view(np.uint8).astype(np.float32), coasting, (ww, wh), flags=cv2.INTER_LINEAR)
            prior = np.maximum(prior, 0.5 * ahead)
        core = prior > 0.5
        if not core.any():
            if sweep.shape.sum() >= s.min_area:
                core = sweep.shape
            else:
                return self._redetect(session, sweep, dst)
        work = self._segment_near(session, sweep, dst, prior, core | sweep.shape)
        work, score = self._finish(session, sweep, dst, work)
        if score < TRACKED_MIN_SCORE:
            # doubtful: the object may be elsewhere (its motion misjudged); a better-scoring region found by its
            # appearance over the whole frame replaces the carried mask
            kept = sweep.centre, sweep.agreement
            found, found_score = self._redetect(session, sweep, dst, near=work)
            if found_score > score:
                sweep.shape = found
                return found, found_score
            sweep.centre, sweep.agreement = kept
        if work.any():
            # the visible mask is the object's extent unless it lost much of it (hidden behind something)
            sweep.shape = work | sweep.shape if work.sum() < 0.9 * sweep.shape.sum() else work
        return work, score

    def _segment_near(
        self, session: TrackerSession, sweep: _Sweep, t: int, prior: np.ndarray, core: np.ndarray
    ) -> np.ndarray:
        """The object on frame t near a prior (float [h, w] in [0, 1]; `core`: where it may be, bool).

        First a per-pixel vote: the appearance model's log-likelihood ratio plus the prior's log-odds, smoothed,
        within `grow` px of the core. Then GrabCut refines its edges, with the prompt frame's object colours frozen
        and this frame's background learned: sure object where the vote and the prior agree well inside, probable
        object in the rest of the vote, probable background around it. Chunks of the vote that the appearance model
        calls clearly object (more than slivers along an edge) are kept whatever GrabCut says."""
        s = self.settings
        _, _, feat = self._cached(session, t)
        likely = (prior > 0.5) | core
        # a fast object may be further off than its measured motion says: reach as far as it moves a frame
        speed = 0.0 if sweep.velocity is None else float(np.hypot(*sweep.velocity))
        grow = max(s.grow, min(round(speed), 4 * s.grow))
        if likely.sum() < 0.8 * sweep.ref_area * sweep.scale:
            grow *= 2  # part of the object is missing (hidden, or lost by the last frames): let it come back faster
        x0, y0, x1, y1 = _grown(_bbox(likely), grow + 2 + int(2 * s.flow_sigma), core.shape)
        size = max(x1 - x0, y1 - y0)
        smooth = cv2.GaussianBlur(prior[y0:y1, x0:x1], (0, 0), s.flow_sigma)
        k = 2 * grow + 1
        ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        allowed = cv2.dilate(likely[y0:y1, x0:x1].view(np.uint8), ellipse)
        vote = sweep.model.log_ratio(feat[y0:y1, x0:x1]) + s.prior_weight * (2.0 * smooth - 1.0)
        vote[allowed == 0] = -8.0
        vote = cv2.GaussianBlur(vote, (0, 0), 1.0 if size > 20 else 0.6)
        voted = _fill_small_holes(_keep_connected(vote > 0, likely[y0:y1, x0:x1]))
        out = np.zeros_like(core)
        out[y0:y1, x0:x1] = voted
        if sweep.gmm is None or voted.sum() < 16:
            return out
        sure = cv2.erode(voted.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        sure &= (smooth > 0.9) & (vote > 2.0)
        band = cv2.dilate(voted.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
        trimap = np.full(core.shape, cv2.GC_BGD, np.uint8)
        sub = trimap[y0:y1, x0:x1]
        sub[band] = cv2.GC_PR_BGD
        sub[voted] = cv2.GC_PR_FGD
        sub[sure] = cv2.GC_FGD
        refined, _ = self._refine(self._small(session, t), trimap, sweep.gmm, s.carry_refine_max_side)
        # GrabCut's frozen colours may no longer fit (new light, a turn): pixels of the vote that the appearance
        # model calls clearly object stay
        missing = voted & (sweep.model.log_ratio(feat[y0:y1, x0:x1]) > 2.5) & ~refined[y0:y1, x0:x1]
        missing = cv2.morphologyEx(missing.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
        refined[y0:y1, x0:x1] |= missing  # chunks, not the slivers GrabCut trims off thin parts
        return _fill_small_holes(_keep_connected(refined, out))

    def _finish(
        self, session: TrackerSession, sweep: _Sweep, t: int, work: np.ndarray, learn: bool = True
    ) -> tuple[np.ndarray, float]:
        """Score the frame's mask, learn from it if confident, remember where the object was."""
        s = self.settings
        if work.sum() < s.min_area:
            return np.zeros_like(work), 0.0
        _, _, feat = self._cached(session, t)
        score = self._score(sweep, feat, work)
        box = _bbox(work)
        sweep.centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        if learn and score >= s.confident:
            size = max(box[2] - box[0], box[3] - box[1])
            ring = _ring(work, 2, max(6, size // 2))
            sweep.model.learn(feat[work], feat[ring], rate=s.learn_rate, bg_rate=s.background_rate)
        return work, score

    def _score(self, sweep: _Sweep, feat: np.ndarray, work: np.ndarray) -> float:
        """Confidence in a carried mask, in [0, 1]: how well the object's model explains the mask's pixels (the
        fraction it calls object, against that fraction on the prompt frame) times how the mask's area compares
        with the area the flow predicts from the prompt frame's (a shrunk mask costs in proportion: a collapse
        scores near 0; growth costs less, as an object coming out from behind something grows)."""
        fit = float((sweep.model.log_ratio(feat[work]) > 0).mean())
        colour = min(1.0, fit / sweep.fit0)
        expected = sweep.ref_area * sweep.scale
        area = float(work.sum())
        ratio = area / expected if area < expected else (expected / area) ** 0.5
        motion = min(1.0, sweep.agreement / 0.5)
        return float(min(1.0, colour / 0.8) * min(1.0, ratio / 0.7) * motion)

    def _redetect(
        self, session: TrackerSession, sweep: _Sweep, t: int, near: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Look for the object with its model: around `near` (the carried mask, when it is doubtful) or, when it is
        lost, around where it would be at its last velocity, in a radius that widens the longer it stays lost. A
        region is taken only if the model calls most of it object and its size is plausible; a region found while
        lost scores at most as `uncertain` (a guess until the next frames confirm it)."""
        s = self.settings
        _, _, feat = self._cached(session, t)
        h, w = feat.shape
        table = sweep.model.log_ratio(feat)
        ratio = cv2.blur(table, (5, 5))
        candidates = (ratio > 1.0).view(np.uint8)
        n, labels, stats, centroids = cv2.connectedComponentsWithStats(candidates, connectivity=8)
        expected = sweep.ref_area * sweep.scale
        lost = near is None or not near.any()
        velocity = np.zeros(2) if sweep.velocity is None else np.asarray(sweep.velocity, float)
        predicted = np.asarray(sweep.centre, float) + velocity * (sweep.lost_for + 1)
        radius = np.sqrt(max(expected, 1.0)) * (1.5 + 0.5 * sweep.lost_for)
        best, best_value = None, -np.inf
        for k in range(1, n):
            area = stats[k, cv2.CC_STAT_AREA]
            if not 0.25 * expected <= area <= 4.0 * expected or area < s.min_area:
                continue
            region = labels == k
            if lost:
                dist = float(np.hypot(*(centroids[k] - predicted)))
                if dist > radius:
                    continue
            elif not (region & near).any():
                continue
            else:
                dist = 0.0
            fit = float((table[region] > 0).mean())
            if fit < 0.8 * sweep.fit0:
                continue
            value = fit - dist / np.hypot(h, w)
            if value > best_value:
                best, best_value = region, value
        if best is None:
            return np.zeros((h, w), bool), 0.0
        prior = best.view(np.uint8).astype(np.float32)
        sweep.agreement = 1.0
        work = self._segment_near(session, sweep, t, prior, best)
        work, score = self._finish(session, sweep, t, work, learn=False)
        return work, min(score, 0.5) if lost else score

    def _forget_object(self, session: TrackerSession, obj_id: int) -> None:
        pass
