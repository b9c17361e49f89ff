"""JSON text for ROS String topics and records: compact, NaN-free, numpy-agnostic."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def to_json(doc: Any) -> str:
    """Compact JSON; NaN and infinities (not JSON) become null, numpy scalars plain numbers."""
    return json.dumps(_plain(doc), ensure_ascii=False, allow_nan=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
