"""Generator of the Gazebo SDF simulation worlds and their ground truth.

`python -m sim_worlds.worldgen` rewrites sim_worlds/worlds/ deterministically.
"""

from __future__ import annotations

from sim_worlds.worldgen.generate import (
    WORLD_NAMES,
    WORLDS_DIR,
    stale_files,
    world_files,
    write_worlds,
)
from sim_worlds.worldgen.truth import TruthFormatError, WorldTruth, load_truth

__all__ = [
    "WORLDS_DIR",
    "WORLD_NAMES",
    "TruthFormatError",
    "WorldTruth",
    "load_truth",
    "stale_files",
    "world_files",
    "write_worlds",
]
