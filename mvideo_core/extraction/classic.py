"""The weight-free tracker: GrabCut from a box or clicks, DIS optical flow to carry the mask, GrabCut to re-fit it.

It is the embedded default when no SAM2 weights are on the machine, and says so in every `MaskSet` it returns
(`meta["tracker"]`). Work happens at a reduced resolution (`work_max_side`); masks come back at video resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mvideo_core.extraction.base import TrackedObject, Tracker, TrackerSession

CLASSIC_DESCRIPTION = "classic (weight-free fallback: GrabCut + DIS optical flow; no SAM2 weights used)"


@dataclass
class ClassicSettings:
    """Speed/accuracy knobs of `ClassicTracker` (pixel sizes are at the work resolution)."""

    work_max_side: int = 360  # flow and masks are computed with the longer side at most this
    refine_max_side: int = 160  # GrabCut runs on the object's band resized to at most this
    band: int = 6  # half width of the uncertain band around the carried mask, work pixels
    search: float = 0.6  # the object's box grown by this fraction is searched too (parts reappearing after occlusion)
    grabcut_iters: int = 2
    click_radius: int = 3
    min_area: int = 6  # a carried mask smaller than this (work pixels) means the object left the frame
    # a box prompt whose GrabCut keeps less than this fraction of the box is segmented again from a box grown by
    # `box_retry_grow` of its shorter side (result still cut to the user's box): when the object spills over the box
    # edge, its colours sit in the sure-background ring and teach GrabCut that the object is background
    box_retry_below: float = 0.05
    box_retry_grow: float = 0.3


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


class ClassicTracker(Tracker):
    """OpenCV-only tracker with the same session API as `Sam2Tracker`; several objects, both directions."""

    name = "classic"
    description = CLASSIC_DESCRIPTION

    def __init__(self, settings: ClassicSettings | None = None):
        self.settings = settings or ClassicSettings()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    # -- session ---------------------------------------------------------------------------------------------
    def _init_session(self, session: TrackerSession) -> None:
        h, w = session.size
        scale = min(1.0, self.settings.work_max_side / max(h, w))
        wh, ww = max(2, round(h * scale)), max(2, round(w * scale))
        session.engine.update(scale=scale, work_size=(wh, ww), small={}, flow={})
        session.meta["work_size"] = [wh, ww]

    def _small(self, session: TrackerSession, t: int) -> np.ndarray:
        """Frame t at work resolution, uint8 [h, w, 3]; a small cache keeps memory flat on long videos."""
        return self._cached(session, t)[0]

    def _gray(self, session: TrackerSession, t: int) -> np.ndarray:
        return self._cached(session, t)[1]

    def _cached(self, session: TrackerSession, t: int) -> tuple[np.ndarray, np.ndarray]:
        cache = session.engine["small"]
        if t not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            wh, ww = session.engine["work_size"]
            frame = session.frames[t]
            small = frame if (wh, ww) == frame.shape[:2] else cv2.resize(frame, (ww, wh), interpolation=cv2.INTER_AREA)
            cache[t] = (small, cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        return cache[t]

    def _flow(self, session: TrackerSession, src: int, dst: int) -> np.ndarray:
        """Backward flow: for each pixel of `dst`, the offset to where it was in `src`. float32 [h, w, 2]."""
        key = (src, dst)
        cache = session.engine["flow"]
        if key not in cache:
            cache.clear()
            cache[key] = dis_flow(self._dis, self._gray(session, dst), self._gray(session, src))
        return cache[key]

    def _to_video(self, session: TrackerSession, work_mask: np.ndarray) -> np.ndarray:
        h, w = session.size
        if work_mask.shape == (h, w):
            return work_mask.copy()
        up = cv2.resize(work_mask.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR)
        return up > 127

    def _work_masks(self, session: TrackerSession, obj: TrackedObject) -> dict[int, np.ndarray]:
        return obj.state.setdefault("work", {})

    # -- segmentation ----------------------------------------------------------------------------------------
    def _refine(
        self, small: np.ndarray, trimap: np.ndarray, fg_model: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """GrabCut on the bounding box of the uncertain region, resized to at most `refine_max_side`."""
        s = self.settings
        unsure = (trimap == cv2.GC_PR_FGD) | (trimap == cv2.GC_PR_BGD) | (trimap == cv2.GC_FGD)
        ys, xs = np.nonzero(unsure)
        if len(ys) == 0:
            return np.zeros(trimap.shape, bool), fg_model
        h, w = trimap.shape
        pad = 2 * s.band
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)
        crop_img, crop_tri = small[y0:y1, x0:x1], trimap[y0:y1, x0:x1]
        ch, cw = crop_tri.shape
        f = min(1.0, s.refine_max_side / max(ch, cw))
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
        g = guess.astype(np.uint8)
        outer = cv2.dilate(g, kernel) > 0
        trimap = np.full(guess.shape, cv2.GC_BGD, np.uint8)
        ys, xs = np.nonzero(guess)
        if len(ys) and self.settings.search > 0:
            h, w = guess.shape
            my = int((ys.max() - ys.min() + 1) * self.settings.search)
            mx = int((xs.max() - xs.min() + 1) * self.settings.search)
            trimap[max(ys.min() - my, 0) : ys.max() + my + 1, max(xs.min() - mx, 0) : xs.max() + mx + 1] = (
                cv2.GC_PR_BGD
            )
        trimap[outer] = cv2.GC_PR_BGD
        trimap[guess] = cv2.GC_PR_FGD
        return trimap

    def _apply_clicks(self, trimap: np.ndarray, points: np.ndarray | None, labels: np.ndarray | None, scale: float):
        if points is None:
            return
        for (x, y), lab in zip(points * scale, labels):
            value = cv2.GC_FGD if lab == 1 else cv2.GC_BGD
            cv2.circle(trimap, (int(round(x)), int(round(y))), self.settings.click_radius, int(value), -1)

    def _segment_prompt(self, session: TrackerSession, obj: TrackedObject, frame_idx: int) -> np.ndarray:
        prompt = obj.prompts[frame_idx]
        scale = session.engine["scale"]
        small = self._small(session, frame_idx)
        wh, ww = small.shape[:2]
        works = self._work_masks(session, obj)
        prior, box_px = None, None
        if obj.done[frame_idx]:
            prior = works.get(frame_idx)
            if prior is None:
                prior = (
                    cv2.resize(obj.masks[frame_idx].astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST) > 0
                )
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
            trimap = self._band_trimap(prior)
        else:
            # clicks only on a new object: probable object in discs around the positive clicks, probable
            # background in a window a third of the frame wide, sure background beyond
            pos = prompt.points[prompt.labels == 1] * scale
            half = max(wh, ww) // 6
            x0, y0 = np.maximum(pos.min(0).astype(int) - half, 0)
            x1, y1 = np.minimum(pos.max(0).astype(int) + half + 1, (ww, wh))
            trimap = np.full((wh, ww), cv2.GC_BGD, np.uint8)
            trimap[y0:y1, x0:x1] = cv2.GC_PR_BGD
            for x, y in pos:
                cv2.circle(trimap, (int(round(x)), int(round(y))), max(2, half // 2), int(cv2.GC_PR_FGD), -1)
        self._apply_clicks(trimap, prompt.points, prompt.labels, scale)
        work, model = self._refine(small, trimap)
        if prompt.box is not None:
            x0, y0, x1, y1 = (prompt.box * scale).tolist()
            box = np.zeros_like(work)
            box[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
            work &= box
            if box_px is not None and work.sum() < self.settings.box_retry_below * box.sum():
                work, model = self._retry_grown_box(small, box_px, prompt, scale, box, (work, model))
        obj.state["fg_model"] = model
        works[frame_idx] = work
        return self._to_video(session, work)

    def _retry_grown_box(
        self, small: np.ndarray, box_px: tuple[int, int, int, int], prompt, scale: float, box: np.ndarray, first
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """GrabCut again from the box grown on every side (the object's spill over the box edge is then probable
        object, not sure background); the result is cut to the user's box. Keeps the first try (`first`: mask and
        colour model) if this one finds nothing that stands out from the background around it."""
        x0, y0, x1, y1 = box_px
        wh, ww = small.shape[:2]
        g = max(1, round(self.settings.box_retry_grow * min(x1 - x0, y1 - y0)))
        trimap = _box_trimap(small, max(x0 - g, 0), max(y0 - g, 0), min(x1 + g, ww), min(y1 + g, wh))
        self._apply_clicks(trimap, prompt.points, prompt.labels, scale)
        work, retry_model = self._refine(small, trimap)
        work &= box
        if not work.any() or not _stands_out(small, work, trimap):
            return first
        return work, retry_model

    def _carry(self, session: TrackerSession, src: int, dst: int, obj_ids: list[int], reverse: bool) -> None:
        flow = None
        for obj_id in obj_ids:
            obj = session.objects[obj_id]
            works = self._work_masks(session, obj)
            prev = works.get(src)
            if prev is None:  # frame outside the work cache (e.g. after a restart): rebuild from the video mask
                wh, ww = session.engine["work_size"]
                prev = cv2.resize(obj.masks[src].astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST) > 0
            if prev.sum() < self.settings.min_area:
                work = np.zeros_like(prev)
            else:
                if flow is None:
                    flow = self._flow(session, src, dst)
                    wh, ww = flow.shape[:2]
                    gx, gy = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(wh, dtype=np.float32))
                    map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
                warped = cv2.remap(prev.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderValue=0.0) > 0.5
                if warped.any():
                    work, _ = self._refine(
                        self._small(session, dst), self._band_trimap(warped), obj.state.get("fg_model")
                    )
                else:
                    work = warped
                if work.sum() < self.settings.min_area:
                    work = np.zeros_like(work)
            works[dst] = work
            # keep only the work masks near the front of propagation (plus the prompt frames) in memory
            for t in [t for t in works if abs(t - dst) > 2 and t not in obj.prompts]:
                del works[t]
            obj.masks[dst] = self._to_video(session, work)

    def _forget_object(self, session: TrackerSession, obj_id: int) -> None:
        pass
