"""Errors of the perception package; each names the file, spec or value at fault."""

from __future__ import annotations


class PerceptionError(Exception):
    """Base class of every error raised by ``perception``."""


class DetectorSpecError(PerceptionError):
    """A detector spec string that names no known plugin or is malformed."""


class ModelLoadError(PerceptionError):
    """A model file that is missing, unreadable or not a model of the expected kind."""


class ImageError(PerceptionError):
    """An image that cannot be decoded or has the wrong shape or type."""


class DatasetError(PerceptionError):
    """A dataset folder or label file that does not follow the YOLO layout."""


class GradingError(PerceptionError):
    """A defect or segment that the grading tables cannot evaluate."""
