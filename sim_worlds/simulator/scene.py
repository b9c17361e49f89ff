"""Ray casting against an SDF world's static geometry (Open3D RaycastingScene / Embree).

Every :class:`~sim_worlds.simulator.sdf.Geometry` is tessellated into world-frame triangles
(boxes, cylinders with ``cylinder_segments`` sides, UV spheres, quads for planes, meshes as
read) and all of them go into one Embree scene. Per-triangle lookup arrays (owning geometry,
world normal, texture coordinates of the three corners) turn Embree's triangle id and
barycentric coordinates into our hit record without any Python loop per ray or per object.

Curved surfaces are exact: a hit on the side of a cylinder or on a sphere / ellipsoid facet is
moved onto the true quadric surface (ray-quadric intersection in the geometry's local frame),
so a pipe of radius r measures r and not the facet distance ``r cos(pi / segments)``; its
normal is the analytic surface normal. Cylinder caps, boxes, planes, meshes and capsules use
their triangles as they are.

Texture coordinates ``uv`` (both in [0, 1]) follow one convention per shape, in the
geometry's local frame:

- box: each face maps its two in-plane axes over the face size, seen from outside with
  +z up: faces +x / -x have u along +y / -y, +y / -y have u along -x / +x, all side faces
  have v along +z; the +z face has (u, v) along (+x, +y), the -z face along (-x, +y).
  The face centre is (0.5, 0.5).
- cylinder (axis z): u = atan2(y, x) / 2 pi wrapped to [0, 1), v = z / length + 0.5;
  caps map (x, y) over the diameter: u = x / 2r + 0.5, v = y / 2r + 0.5.
- sphere / ellipsoid: longitude u = atan2(y/b, x/a) / 2 pi in [0, 1), latitude
  v = 0.5 + asin(z/c) / pi (0 at the south pole, 1 at the north pole).
- capsule: u as the cylinder, v = (z + length/2 + r) / (length + 2r) over the whole height.
- plane: (u, v) over the rectangle's own x / y size, (0, 0) at its (-x, -y) corner.
- mesh: the file's texture coordinates if it has them (they may tile outside [0, 1]),
  else a planar projection over the local x / y bounding box.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import open3d
from numpy.typing import NDArray

from sim_worlds.simulator.errors import SimError
from sim_worlds.simulator.sdf import (
    Box,
    Capsule,
    Cylinder,
    Ellipsoid,
    Geometry,
    Material,
    Mesh,
    Plane,
    SdfWorld,
    Shape,
    Sphere,
)

DEFAULT_CYLINDER_SEGMENTS = 48
"""Sides of a tessellated cylinder (its side hits are made exact anyway)."""
DEFAULT_SPHERE_RINGS = 24
"""Latitude bands of a tessellated sphere; it has twice as many longitude sectors."""

_PART_FLAT = 0  # facet is the surface: Embree's hit is final
_PART_CYLINDER_SIDE = 1
_PART_ELLIPSOID = 2  # spheres and ellipsoids


@dataclass(frozen=True, eq=False)
class RayHits:
    """First hit of each ray; misses have ``range_m`` inf, ``geometry_index`` -1, NaN elsewhere.

    ``range_m`` (N,) float32 metres along the (unit) direction, inf for no hit within range;
    ``point_m`` (N, 3) float32 world frame; ``normal`` (N, 3) float32 unit world-frame surface
    normal turned to face the ray origin; ``geometry_index`` (N,) int32 into the scene's
    geometries; ``uv`` (N, 2) float32 texture coordinates (convention in the module docstring).
    """

    range_m: NDArray[np.float32]
    point_m: NDArray[np.float32]
    normal: NDArray[np.float32]
    geometry_index: NDArray[np.int32]
    uv: NDArray[np.float32]

    @property
    def hit(self) -> NDArray[np.bool_]:
        """(N,) True where the ray hit something within range."""
        return self.geometry_index >= 0


@dataclass(frozen=True, eq=False)
class _Triangles:
    """A triangle soup in a geometry's local frame, with per-corner uv and surface part."""

    corners_m: NDArray[np.float64]  # (T, 3, 3)
    corner_uv: NDArray[np.float32]  # (T, 3, 2)
    part: NDArray[np.int8]  # (T,)


# ---------------------------------------------------------------------------------------------
# Tessellation (local frame)
# ---------------------------------------------------------------------------------------------

# Box faces: (normal axis, sign, u axis, u sign, v axis, v sign); see the module docstring.
_BOX_FACES = (
    (0, 1.0, 1, 1.0, 2, 1.0),
    (0, -1.0, 1, -1.0, 2, 1.0),
    (1, 1.0, 0, -1.0, 2, 1.0),
    (1, -1.0, 0, 1.0, 2, 1.0),
    (2, 1.0, 0, 1.0, 1, 1.0),
    (2, -1.0, 0, -1.0, 1, 1.0),
)
_QUAD_UV = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], dtype=np.float64)


@cache
def _unit_box() -> _Triangles:
    """Unit cube centred on the origin: 12 triangles."""
    corners = np.zeros((6, 2, 3, 3))
    for face, (n_axis, n_sign, u_axis, u_sign, v_axis, v_sign) in enumerate(_BOX_FACES):
        corners[face, :, :, n_axis] = 0.5 * n_sign
        corners[face, :, :, u_axis] = u_sign * (_QUAD_UV[:, :, 0] - 0.5)
        corners[face, :, :, v_axis] = v_sign * (_QUAD_UV[:, :, 1] - 0.5)
    uv = np.broadcast_to(_QUAD_UV, (6, 2, 3, 2))
    return _Triangles(
        corners_m=corners.reshape(12, 3, 3),
        corner_uv=uv.reshape(12, 3, 2).astype(np.float32),
        part=np.full(12, _PART_FLAT, dtype=np.int8),
    )


@cache
def _unit_cylinder(segments: int) -> _Triangles:
    """Cylinder of radius 1 and length 1 along z: side quads and two triangle-fan caps."""
    j = np.arange(segments)
    u0, u1 = j / segments, (j + 1) / segments
    a0, a1 = 2.0 * math.pi * u0, 2.0 * math.pi * u1
    c0, s0, c1, s1 = np.cos(a0), np.sin(a0), np.cos(a1), np.sin(a1)
    lo, hi, zeros = np.full(segments, -0.5), np.full(segments, 0.5), np.zeros(segments)

    def tri(p: Sequence[NDArray[np.float64]]) -> NDArray[np.float64]:
        return np.stack([np.stack(p[0:3], -1), np.stack(p[3:6], -1), np.stack(p[6:9], -1)], 1)

    side_a = tri([c0, s0, lo, c1, s1, lo, c1, s1, hi])
    side_b = tri([c0, s0, lo, c1, s1, hi, c0, s0, hi])
    top = tri([zeros, zeros, hi, c0, s0, hi, c1, s1, hi])
    bottom = tri([zeros, zeros, lo, c1, s1, lo, c0, s0, lo])
    ones = np.ones(segments)
    uv_side_a = tri([u0, zeros, zeros, u1, zeros, zeros, u1, ones, zeros])[:, :, :2]
    uv_side_b = tri([u0, zeros, zeros, u1, ones, zeros, u0, ones, zeros])[:, :, :2]
    caps = np.concatenate([top, bottom])
    uv_caps = caps[:, :, :2] * 0.5 + 0.5
    return _Triangles(
        corners_m=np.concatenate([side_a, side_b, caps]),
        corner_uv=np.concatenate([uv_side_a, uv_side_b, uv_caps]).astype(np.float32),
        part=np.concatenate(
            [
                np.full(2 * segments, _PART_CYLINDER_SIDE, dtype=np.int8),
                np.full(2 * segments, _PART_FLAT, dtype=np.int8),
            ]
        ),
    )


def _lat_long_grid(
    latitude_rad: NDArray[np.float64],
    z_offset_m: NDArray[np.float64],
    v: NDArray[np.float64],
    segments: int,
    part: int,
) -> _Triangles:
    """Triangles between consecutive rings of a unit-radius surface of revolution about z.

    Ring i lies at ``latitude_rad[i]``, shifted by ``z_offset_m[i]``, with texture ``v[i]``;
    the first and last rings are the poles (their degenerate triangles are dropped).
    """
    rings = latitude_rad.size
    u = np.arange(segments + 1) / segments
    longitude = 2.0 * math.pi * u
    cos_lat = np.cos(latitude_rad)[:, None]
    grid = np.stack(
        [
            cos_lat * np.cos(longitude)[None, :],
            cos_lat * np.sin(longitude)[None, :],
            np.broadcast_to((np.sin(latitude_rad) + z_offset_m)[:, None], (rings, segments + 1)),
        ],
        -1,
    )
    grid_uv = np.stack(np.broadcast_arrays(u[None, :], v[:, None]), -1)
    i_grid, j_grid = np.meshgrid(np.arange(rings - 1), np.arange(segments), indexing="ij")
    i, j = i_grid.ravel(), j_grid.ravel()
    # (2: ring and sector index, 3 corners, K quads)
    first = np.stack([(i, j), (i, j + 1), (i + 1, j + 1)], 1)
    second = np.stack([(i, j), (i + 1, j + 1), (i + 1, j)], 1)
    keep_first, keep_second = i > 0, i < rings - 2  # skip triangles collapsed at a pole
    index = np.concatenate([first[:, :, keep_first], second[:, :, keep_second]], axis=2)
    rows, cols = index[0].T, index[1].T  # (T, 3)
    return _Triangles(
        corners_m=grid[rows, cols],
        corner_uv=grid_uv[rows, cols].astype(np.float32),
        part=np.full(rows.shape[0], part, dtype=np.int8),
    )


@cache
def _unit_sphere(rings: int, segments: int) -> _Triangles:
    """UV sphere of radius 1: ``rings`` latitude bands, ``segments`` longitude sectors."""
    latitude = np.linspace(-0.5 * math.pi, 0.5 * math.pi, rings + 1)
    return _lat_long_grid(
        latitude, np.zeros(rings + 1), 0.5 + latitude / math.pi, segments, _PART_ELLIPSOID
    )


def _capsule(shape: Capsule, rings: int, segments: int) -> _Triangles:
    half = max(rings // 2, 2)
    lower = np.linspace(-0.5 * math.pi, 0.0, half + 1)
    upper = np.linspace(0.0, 0.5 * math.pi, half + 1)
    latitude = np.concatenate([lower, upper])
    half_length = 0.5 * shape.length_m / shape.radius_m  # in radii
    offset = np.concatenate([np.full(half + 1, -half_length), np.full(half + 1, half_length)])
    z = np.sin(latitude) + offset
    v = (z + half_length + 1.0) / (2.0 * half_length + 2.0)
    unit = _lat_long_grid(latitude, offset, v, segments, _PART_FLAT)
    return _Triangles(unit.corners_m * shape.radius_m, unit.corner_uv, unit.part)


def _rotation_z_to(normal: NDArray[np.float64]) -> NDArray[np.float64]:
    """Shortest rotation taking +z onto a unit vector (Gazebo's plane orientation)."""
    c = float(normal[2])
    if c < -1.0 + 1e-12:
        return np.diag([1.0, -1.0, -1.0])
    k = np.array([[0.0, 0.0, normal[0]], [0.0, 0.0, normal[1]], [-normal[0], -normal[1], 0.0]])
    rotation: NDArray[np.float64] = np.eye(3) + k + (k @ k) / (1.0 + c)
    return rotation


def _plane(shape: Plane) -> _Triangles:
    size = np.array([shape.size_m[0], shape.size_m[1], 0.0])
    in_plane = (_QUAD_UV.reshape(6, 2) - 0.5) * size[:2]
    points = np.column_stack([in_plane, np.zeros(6)])
    rotation = _rotation_z_to(np.array(shape.normal))
    return _Triangles(
        corners_m=(points @ rotation.T).reshape(2, 3, 3),
        corner_uv=_QUAD_UV.astype(np.float32),
        part=np.full(2, _PART_FLAT, dtype=np.int8),
    )


def _mesh(shape: Mesh) -> _Triangles:
    corners = shape.vertices_m[shape.triangles]
    if shape.triangle_uvs is not None:
        uv = shape.triangle_uvs
    else:
        low = shape.vertices_m[:, :2].min(axis=0)
        extent = shape.vertices_m[:, :2].max(axis=0) - low
        safe = np.where(extent > 0.0, extent, 1.0)
        uv = np.where(extent > 0.0, (corners[:, :, :2] - low) / safe, 0.5).astype(np.float32)
    return _Triangles(corners, uv, np.full(corners.shape[0], _PART_FLAT, dtype=np.int8))


def _tessellate(shape: Shape, segments: int, rings: int) -> _Triangles:
    """Local-frame triangles of a shape."""
    if isinstance(shape, Box):
        unit = _unit_box()
        return _Triangles(unit.corners_m * np.array(shape.size_m), unit.corner_uv, unit.part)
    if isinstance(shape, Cylinder):
        unit = _unit_cylinder(segments)
        scale = np.array([shape.radius_m, shape.radius_m, shape.length_m])
        return _Triangles(unit.corners_m * scale, unit.corner_uv, unit.part)
    if isinstance(shape, Sphere):
        unit = _unit_sphere(rings, 2 * rings)
        return _Triangles(unit.corners_m * shape.radius_m, unit.corner_uv, unit.part)
    if isinstance(shape, Ellipsoid):
        unit = _unit_sphere(rings, 2 * rings)
        return _Triangles(unit.corners_m * np.array(shape.radii_m), unit.corner_uv, unit.part)
    if isinstance(shape, Capsule):
        return _capsule(shape, rings, segments)
    if isinstance(shape, Plane):
        return _plane(shape)
    return _mesh(shape)


def _quadric_scale(shape: Shape) -> tuple[NDArray[np.float64], float]:
    """Inverse semi-axes (0 along a cylinder's axis) and the cylinder's length (else inf)."""
    if isinstance(shape, Cylinder):
        inverse = 1.0 / shape.radius_m
        return np.array([inverse, inverse, 0.0]), shape.length_m
    if isinstance(shape, Sphere):
        return np.full(3, 1.0 / shape.radius_m), math.inf
    if isinstance(shape, Ellipsoid):
        return 1.0 / np.array(shape.radii_m), math.inf
    return np.zeros(3), math.inf


# ---------------------------------------------------------------------------------------------
# The scene
# ---------------------------------------------------------------------------------------------


class RaycastScene:
    """World-frame triangles of a world's geometries in an Embree BVH, with hit lookups."""

    def __init__(
        self,
        geometries: Sequence[Geometry],
        *,
        cylinder_segments: int = DEFAULT_CYLINDER_SEGMENTS,
        sphere_rings: int = DEFAULT_SPHERE_RINGS,
        threads: int = 0,
    ) -> None:
        """Tessellate ``geometries`` and build the BVH; ``threads`` 0 lets Embree choose."""
        if not geometries:
            raise SimError("no geometry to ray-cast: the world (minus excluded models) is empty")
        if cylinder_segments < 3 or sphere_rings < 2:
            raise ValueError("need at least 3 cylinder segments and 2 sphere rings")
        self._geometries = tuple(geometries)
        self._threads = threads
        count = len(self._geometries)
        corners, uvs, parts, owners = [], [], [], []
        self._R_geom_world = np.empty((count, 3, 3))
        self._p_world_geom = np.empty((count, 3))
        self._inv_semi_axes = np.empty((count, 3))
        self._inv_length = np.empty(count)
        self._half_length_m = np.empty(count)
        for index, geometry in enumerate(self._geometries):
            T_world_geom = geometry.T_world_geom
            R, p = T_world_geom[:3, :3], T_world_geom[:3, 3]
            local = _tessellate(geometry.shape, cylinder_segments, sphere_rings)
            corners.append(local.corners_m @ R.T + p)
            uvs.append(local.corner_uv)
            parts.append(local.part)
            owners.append(np.full(local.part.size, index, dtype=np.int32))
            self._R_geom_world[index] = R.T
            self._p_world_geom[index] = p
            inv_semi_axes, length_m = _quadric_scale(geometry.shape)
            self._inv_semi_axes[index] = inv_semi_axes
            self._inv_length[index] = 1.0 / length_m
            self._half_length_m[index] = 0.5 * length_m
        corners_m = np.concatenate(corners)
        # One extra sentinel triangle (index T) stands for "no hit": owner -1, NaN normal and uv
        self._sentinel = np.uint32(corners_m.shape[0])
        owners.append(np.array([-1], dtype=np.int32))
        uvs.append(np.full((1, 3, 2), np.nan, dtype=np.float32))
        parts.append(np.array([_PART_FLAT], dtype=np.int8))
        self._tri_geometry = np.concatenate(owners)
        # uv = uv0 + w1 (uv1 - uv0) + w2 (uv2 - uv0), stored flat for fast gathers
        corner_uv = np.concatenate(uvs)
        self._tri_uv_affine = np.ascontiguousarray(
            np.concatenate(
                [
                    corner_uv[:, 0],
                    corner_uv[:, 1] - corner_uv[:, 0],
                    corner_uv[:, 2] - corner_uv[:, 0],
                ],
                axis=1,
            ),
            dtype=np.float32,
        )
        self._tri_part = np.concatenate(parts)
        normals = _unit_normals(corners_m).astype(np.float32)
        self._tri_normal = np.concatenate([normals, np.full((1, 3), np.nan, dtype=np.float32)])
        flat = corners_m.reshape(-1, 3)
        self._bounds_m = (flat.min(axis=0), flat.max(axis=0))
        vertices = open3d.core.Tensor.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))
        indices = np.arange(flat.shape[0], dtype=np.uint32).reshape(-1, 3)
        self._scene = open3d.t.geometry.RaycastingScene()
        self._scene.add_triangles(vertices, open3d.core.Tensor.from_numpy(indices))

    @classmethod
    def from_world(
        cls,
        world: SdfWorld,
        *,
        cylinder_segments: int = DEFAULT_CYLINDER_SEGMENTS,
        sphere_rings: int = DEFAULT_SPHERE_RINGS,
        threads: int = 0,
    ) -> RaycastScene:
        """Scene of a loaded world's (static) geometries; indices match ``world.geometries``."""
        return cls(
            world.geometries,
            cylinder_segments=cylinder_segments,
            sphere_rings=sphere_rings,
            threads=threads,
        )

    @property
    def geometries(self) -> tuple[Geometry, ...]:
        """The geometries, in hit-index order."""
        return self._geometries

    @property
    def triangle_count(self) -> int:
        """Number of triangles in the BVH."""
        return int(self._sentinel)

    @property
    def bounds_m(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """World-frame axis-aligned bounds (min xyz, max xyz) of all triangles."""
        return self._bounds_m[0].copy(), self._bounds_m[1].copy()

    def geometry(self, index: int) -> Geometry:
        """Geometry with this hit index (IndexError for -1, a miss)."""
        if index < 0:
            raise IndexError(f"geometry index {index} is a miss, not a geometry")
        return self._geometries[index]

    def material(self, index: int) -> Material:
        """Material of the geometry with this hit index."""
        return self.geometry(index).material

    def cast(
        self,
        origins_m: NDArray[np.floating],
        directions: NDArray[np.floating],
        max_range_m: float = math.inf,
    ) -> RayHits:
        """First hits of rays from ``origins_m`` (N, 3) along unit ``directions`` (N, 3).

        Both are world frame; hits farther than ``max_range_m`` count as misses.
        """
        if origins_m.ndim != 2 or origins_m.shape[1] != 3 or directions.shape != origins_m.shape:
            raise ValueError(
                f"origins {origins_m.shape} and directions {directions.shape} must both be (N, 3)"
            )
        count = origins_m.shape[0]
        # Cast all rays
        rays = np.empty((count, 6), dtype=np.float32)
        rays[:, :3] = origins_m
        rays[:, 3:] = directions
        result = self._scene.cast_rays(open3d.core.Tensor.from_numpy(rays), self._threads)
        t_hit: NDArray[np.float32] = result["t_hit"].numpy().copy()
        triangle: NDArray[np.uint32] = result["primitive_ids"].numpy()
        barycentric: NDArray[np.float32] = result["primitive_uvs"].numpy()
        # Misses and hits beyond range look up the sentinel triangle (no geometry, NaN)
        triangle = np.minimum(triangle, self._sentinel)
        if math.isfinite(max_range_m):
            triangle[t_hit > max_range_m] = self._sentinel
        # Look up owner, facet normal and uv (np.take is much faster than fancy indexing)
        geometry_index = np.take(self._tri_geometry, triangle)
        normal = np.take(self._tri_normal, triangle, axis=0)
        affine = np.take(self._tri_uv_affine, triangle, axis=0)
        w1, w2 = barycentric[:, 0], barycentric[:, 1]
        uv = np.empty((count, 2), dtype=np.float32)
        for k in range(2):
            uv[:, k] = affine[:, k] + affine[:, 2 + k] * w1 + affine[:, 4 + k] * w2
        # Snap curved hits onto the true surface
        part = np.take(self._tri_part, triangle)
        curved = np.flatnonzero(part)
        if curved.size:
            self._refine_curved(curved, part[curved], geometry_index, rays, t_hit, normal, uv)
            if math.isfinite(max_range_m):
                beyond = np.flatnonzero(t_hit[curved] > max_range_m)
                if beyond.size:
                    miss = curved[beyond]
                    geometry_index[miss] = -1
                    normal[miss], uv[miss] = np.nan, np.nan
        # Face normals towards the ray origin
        origin, direction = rays[:, :3], rays[:, 3:]
        flip = np.einsum("ij,ij->i", normal, direction) > 0.0
        normal[flip] *= -1.0
        # Range and point; misses get inf and NaN
        missed = geometry_index < 0
        any_missed = bool(missed.any())
        if any_missed:
            t_hit[missed] = 0.0  # not inf: 0 * inf would warn
        point = np.empty((count, 3), dtype=np.float32)
        for k in range(3):
            np.multiply(direction[:, k], t_hit, out=point[:, k])
            point[:, k] += origin[:, k]
        if any_missed:
            point[missed] = np.nan
            t_hit[missed] = np.inf
        return RayHits(t_hit, point, normal, geometry_index, uv)

    def cast_ranges(
        self,
        origins_m: NDArray[np.floating],
        directions: NDArray[np.floating],
        max_range_m: float = math.inf,
    ) -> NDArray[np.float32]:
        """Only the ranges of ``cast`` (inf for misses): what a lidar needs, at half the cost."""
        count = origins_m.shape[0]
        rays = np.empty((count, 6), dtype=np.float32)
        rays[:, :3] = origins_m
        rays[:, 3:] = directions
        result = self._scene.cast_rays(open3d.core.Tensor.from_numpy(rays), self._threads)
        t_hit: NDArray[np.float32] = result["t_hit"].numpy().copy()
        triangle: NDArray[np.uint32] = np.minimum(result["primitive_ids"].numpy(), self._sentinel)
        part: NDArray[np.int8] = np.take(self._tri_part, triangle)
        curved = np.flatnonzero(part)
        if curved.size:
            geometry_index: NDArray[np.int32] = np.take(self._tri_geometry, triangle)
            scratch_normal = np.empty((count, 3), dtype=np.float32)
            scratch_uv = np.empty((count, 2), dtype=np.float32)
            self._refine_curved(curved, part[curved], geometry_index, rays, t_hit,
                                scratch_normal, scratch_uv)
        t_hit[t_hit > max_range_m] = np.inf
        return t_hit

    def _refine_curved(
        self,
        rows: NDArray[np.intp],
        part: NDArray[np.int8],
        geometry_index: NDArray[np.int32],
        rays: NDArray[np.float32],
        t_hit: NDArray[np.float32],
        normal: NDArray[np.float32],
        uv: NDArray[np.float32],
    ) -> None:
        """Move hits on cylinder sides and ellipsoids onto the exact surface (in place).

        In the geometry frame, scaled by the inverse semi-axes s (s_z = 0 for a cylinder), the
        surface is |s * (o + t d)|^2 = 1: a quadratic in t. Of its positive roots the one next
        to the facet hit is taken; a hit is left as it was when there is none or when the
        root leaves the cylinder's length.
        """
        g = geometry_index[rows]
        R_geom_world = self._R_geom_world[g]
        origin = np.einsum("kij,kj->ki", R_geom_world, rays[rows, :3] - self._p_world_geom[g])
        direction = np.einsum("kij,kj->ki", R_geom_world, rays[rows, 3:].astype(np.float64))
        scale = self._inv_semi_axes[g]
        q_origin, q_direction = origin * scale, direction * scale
        a = np.einsum("ki,ki->k", q_direction, q_direction)
        b = 2.0 * np.einsum("ki,ki->k", q_origin, q_direction)
        c = np.einsum("ki,ki->k", q_origin, q_origin) - 1.0
        discriminant = b * b - 4.0 * a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            root = np.sqrt(np.maximum(discriminant, 0.0))
            t_near, t_far = (-b - root) / (2.0 * a), (-b + root) / (2.0 * a)
        t_facet = t_hit[rows].astype(np.float64)
        gap_near = np.where(t_near > 0.0, np.abs(t_near - t_facet), np.inf)
        gap_far = np.where(t_far > 0.0, np.abs(t_far - t_facet), np.inf)
        t_true = np.where(gap_near <= gap_far, t_near, t_far)
        point = origin + direction * t_true[:, None]
        on_cylinder = part == _PART_CYLINDER_SIDE
        ok = (
            (discriminant >= 0.0)
            & (a > 0.0)
            & np.isfinite(np.minimum(gap_near, gap_far))
            & (np.abs(point[:, 2]) <= self._half_length_m[g] + 1e-9)
        )
        if not ok.any():
            return
        keep = rows[ok]
        point, scale, g, on_cylinder = point[ok], scale[ok], g[ok], on_cylinder[ok]
        q = point * scale
        gradient = np.einsum("kji,kj->ki", R_geom_world[ok], q * scale)  # R @ grad, to world
        gradient /= np.linalg.norm(gradient, axis=1, keepdims=True)
        u = (np.arctan2(q[:, 1], q[:, 0]) / (2.0 * math.pi)) % 1.0
        v = np.where(
            on_cylinder,
            point[:, 2] * self._inv_length[g] + 0.5,
            0.5 + np.arcsin(np.clip(q[:, 2], -1.0, 1.0)) / math.pi,
        )
        t_hit[keep] = t_true[ok]
        normal[keep] = gradient
        uv[keep] = np.column_stack([u, v])


def _unit_normals(corners_m: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit normals (T, 3) of triangles (T, 3, 3); zero for degenerate triangles."""
    normals = np.cross(corners_m[:, 1] - corners_m[:, 0], corners_m[:, 2] - corners_m[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    result: NDArray[np.float64] = np.divide(
        normals, length, out=np.zeros_like(normals), where=length > 0.0
    )
    return result
