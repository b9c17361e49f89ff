"""Headless simulator that runs the Gazebo SDF worlds where Gazebo is not installed.

``sdf.load_world`` reads a world into world-frame records; ``scene.RaycastScene`` ray-casts its
geometry (imported from its module, as it loads Open3D).
"""

from sim_worlds.simulator.errors import SdfError, SimError
from sim_worlds.simulator.sdf import (
    Geometry,
    Light,
    Material,
    ModelInfo,
    SdfWorld,
    SensorSpec,
    ShapeKind,
    load_world,
)

__all__ = [
    "Geometry",
    "Light",
    "Material",
    "ModelInfo",
    "SdfError",
    "SdfWorld",
    "SensorSpec",
    "ShapeKind",
    "SimError",
    "load_world",
]
