"""Mask extraction engines: text grounding, SAM2 tracking and a weight-free classic tracker."""

from mvideo_core.extraction.api import (
    BoxPrompt,
    ClickPrompt,
    ExtractionResult,
    extract_masks,
    load_grounder,
    load_tracker,
    parse_box,
    parse_click,
)
from mvideo_core.extraction.base import (
    CancelToken,
    Detections,
    ExtractionCancelled,
    ExtractionError,
    Grounder,
    Tracker,
    TrackerSession,
)
from mvideo_core.extraction.classic import ClassicSettings, ClassicTracker
from mvideo_core.extraction.discovery import WeightsNotFound, find_checkpoint
from mvideo_core.extraction.grounding import COCO_CLASSES, GroundingDinoDetector, GroundingSettings, parse_phrases

__all__ = [
    "COCO_CLASSES",
    "BoxPrompt",
    "CancelToken",
    "ClassicSettings",
    "ClassicTracker",
    "ClickPrompt",
    "Detections",
    "ExtractionCancelled",
    "ExtractionError",
    "ExtractionResult",
    "Grounder",
    "GroundingDinoDetector",
    "GroundingSettings",
    "Tracker",
    "TrackerSession",
    "WeightsNotFound",
    "extract_masks",
    "find_checkpoint",
    "load_grounder",
    "load_tracker",
    "parse_box",
    "parse_click",
    "parse_phrases",
]


def __getattr__(name: str):
    # SAM2 trackers import torch/transformers model code: load them on first use
    if name == "Sam2Tracker":
        from mvideo_core.extraction.sam2_tracker import Sam2Tracker

        return Sam2Tracker
    if name == "Sam2PackageTracker":
        from mvideo_core.extraction.sam2_pkg_tracker import Sam2PackageTracker

        return Sam2PackageTracker
    raise AttributeError(name)
