"""Mask extraction engines: text grounding, SAM2 tracking and a weight-free classic tracker."""
