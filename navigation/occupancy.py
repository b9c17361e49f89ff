"""2D occupancy grid from planar scans or horizontal slices of 3D scans; ROS map_server files.

Each cell holds the log-odds of being occupied. A scan inserted at ``T_map_sensor`` makes the
cells its beams cross more likely free and the cells its returns end in more likely occupied;
cells no beam reached stay unknown (log-odds 0). Within one scan a cell is updated once, and
a return beats a crossing beam, so grazing beams do not erode the walls they end on.
Rays are traversed by sampling every half cell, vectorised over all beams of a scan.

``write_map`` writes ``map.pgm`` + ``map.yaml`` as ``map_saver`` does (trinary: 254 free,
0 occupied, 205 unknown; ``origin`` is the pose of the lower-left pixel); ``read_map`` reads
them back.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray

from navigation.records import FloatArray, LaserScan2D, LidarScan3D

OCCUPIED_THRESH = 0.65
FREE_THRESH = 0.196
PGM_FREE, PGM_OCCUPIED, PGM_UNKNOWN = 254, 0, 205
CELL_FREE, CELL_OCCUPIED, CELL_UNKNOWN = 0, 100, -1
"""Cell values of ``OccupancyMap`` (those of nav_msgs/OccupancyGrid)."""
_MAX_SAMPLES = 4_000_000  # ray samples held at once (memory bound per chunk of beams)


class MapError(Exception):
    """A map file cannot be read or written; the one-line message starts with its path."""


@dataclass(frozen=True)
class OccupancyMap:
    """A trinary map: ``cells[row, col]`` with row 0 at the bottom (smallest y).

    ``origin_xy_m`` is the map-frame position of the lower-left corner of cell (0, 0).
    """

    cells: NDArray[np.int8]
    resolution_m: float
    origin_xy_m: tuple[float, float]
    origin_yaw_rad: float = 0.0

    def cell_center_m(self, row: int, col: int) -> tuple[float, float]:
        """Map-frame (x, y) of the centre of a cell."""
        return (self.origin_xy_m[0] + (col + 0.5) * self.resolution_m,
                self.origin_xy_m[1] + (row + 0.5) * self.resolution_m)

    def cell_at(self, x_m: float, y_m: float) -> tuple[int, int]:
        """(row, col) of the cell holding map point (x, y) (may be outside the map)."""
        return (math.floor((y_m - self.origin_xy_m[1]) / self.resolution_m),
                math.floor((x_m - self.origin_xy_m[0]) / self.resolution_m))


class OccupancyGrid:
    """Log-odds occupancy grid that grows to hold whatever is inserted."""

    def __init__(self, resolution_m: float = 0.05, hit_log_odds: float = 0.85,
                 miss_log_odds: float = -0.4, min_log_odds: float = -2.0,
                 max_log_odds: float = 3.5, grow_margin_m: float = 10.0) -> None:
        if resolution_m <= 0.0:
            raise ValueError(f"resolution must be positive, got {resolution_m} m")
        self.resolution_m = resolution_m
        self.hit_log_odds = hit_log_odds
        self.miss_log_odds = miss_log_odds
        self.min_log_odds = min_log_odds
        self.max_log_odds = max_log_odds
        self.grow_margin_m = grow_margin_m
        self.origin_xy_m: FloatArray = np.zeros(2)
        """Map-frame position of the lower-left corner of cell (0, 0)."""
        self.log_odds: NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
        """(rows, cols): row index along y, column index along x."""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        rows, cols = self.log_odds.shape
        return int(rows), int(cols)

    # --- inserting ------------------------------------------------------------------------

    def insert_scan_2d(self, scan: LaserScan2D, T_map_sensor: FloatArray,
                       clear_no_return_m: float | None = None) -> None:
        """Insert a planar scan taken at ``T_map_sensor``.

        No-returns (inf, NaN, at or beyond ``range_max``) mark nothing unless
        ``clear_no_return_m`` is given: then their first metres (up to ``range_max``) are free.
        Readings below ``range_min`` (0 is an error code) are ignored.
        """
        ranges = scan.ranges_m.astype(np.float64)
        angles = scan.angle_min_rad + scan.angle_increment_rad * np.arange(ranges.size)
        hit = np.isfinite(ranges) & (ranges > scan.range_min_m) & (ranges < scan.range_max_m)
        miss = ~hit & ~(ranges <= scan.range_min_m)  # no return: inf, NaN or max range
        if clear_no_return_m is None:
            miss[:] = False
        lengths = np.where(hit, ranges, min(clear_no_return_m or 0.0, scan.range_max_m))
        keep = hit | miss
        directions = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(ranges.size)])
        endpoints_sensor = directions[keep] * lengths[keep, None]
        endpoints_map = endpoints_sensor @ T_map_sensor[:3, :3].T + T_map_sensor[:3, 3]
        self.insert_rays(T_map_sensor[:2, 3], endpoints_map[:, :2], hit[keep])

    def insert_cloud_slice(self, scan: LidarScan3D, T_map_sensor: FloatArray,
                           band_m: float = 0.1, max_range_m: float | None = None) -> None:
        """Insert the returns of a 3D scan within ``band_m`` of the sensor's height.

        The slice is horizontal in the map frame: |z_map - z_sensor| < ``band_m``. Each point
        is taken at the scan pose (motion during the sweep is not undone here).
        """
        points_map = (scan.points_m.astype(np.float64) @ T_map_sensor[:3, :3].T
                      + T_map_sensor[:3, 3])
        in_band = np.abs(points_map[:, 2] - T_map_sensor[2, 3]) < band_m
        if max_range_m is not None:
            in_band &= np.linalg.norm(scan.points_m, axis=1) < max_range_m
        endpoints = points_map[in_band, :2]
        self.insert_rays(T_map_sensor[:2, 3], endpoints, np.ones(len(endpoints), dtype=bool))

    def insert_rays(self, origin_xy_m: FloatArray, endpoints_xy_m: FloatArray,
                    hits: NDArray[np.bool_]) -> None:
        """One scan's beams from ``origin_xy_m`` to each endpoint (map frame, (N, 2)).

        Cells crossed become likelier free; the endpoint cell of a beam with ``hits`` True
        becomes likelier occupied (beams with False clear their whole length).
        """
        origin = np.asarray(origin_xy_m, dtype=np.float64)[:2]
        ends = np.asarray(endpoints_xy_m, dtype=np.float64).reshape(-1, 2)
        hits = np.asarray(hits, dtype=bool).reshape(-1)
        finite = np.isfinite(ends).all(axis=1)
        ends, hits = ends[finite], hits[finite]
        if len(ends) == 0:
            return
        self._grow_to(np.vstack([ends, origin]))
        # The window of cells this scan can touch: marks there stand in for set operations
        rows, cols = self.cell_indices(np.vstack([ends, origin]))
        r0, c0 = int(rows.min()), int(cols.min())
        window_shape = (int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1)
        crossed = np.zeros(window_shape, dtype=bool)
        for chunk in self._beam_chunks(origin, ends):
            sample_rows, sample_cols = self._crossed_cells(origin, ends[chunk])
            crossed[sample_rows - r0, sample_cols - c0] = True
        hit_rows, hit_cols = rows[:-1][hits], cols[:-1][hits]
        occupied = np.zeros(window_shape, dtype=bool)
        occupied[hit_rows - r0, hit_cols - c0] = True
        # One update per cell per scan; a return beats the beams that cross its cell
        window = self.log_odds[r0:r0 + window_shape[0], c0:c0 + window_shape[1]]
        window[crossed & ~occupied] += self.miss_log_odds
        window[occupied] += self.hit_log_odds
        np.clip(window, self.min_log_odds, self.max_log_odds, out=window)

    def _beam_chunks(self, origin: FloatArray, ends: FloatArray) -> list[slice]:
        samples = np.ceil(np.linalg.norm(ends - origin, axis=1) / (0.5 * self.resolution_m))
        bounds = [0]
        total = 0.0
        for i, n in enumerate(samples):
            total += float(n)
            if total > _MAX_SAMPLES:
                bounds.append(i)
                total = float(n)
        bounds.append(len(ends))
        return [slice(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def _crossed_cells(self, origin: FloatArray,
                       ends: FloatArray) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(rows, cols) of samples every half cell along each beam, short of its endpoint."""
        step_m = 0.5 * self.resolution_m
        deltas = ends - origin
        lengths = np.linalg.norm(deltas, axis=1)
        counts = np.ceil(lengths / step_m).astype(np.int64)
        beam = np.repeat(np.arange(len(ends)), counts)
        starts = np.cumsum(counts) - counts
        k = np.arange(int(counts.sum())) - np.repeat(starts, counts)
        fraction = k * step_m / np.maximum(lengths[beam], 1e-12)
        return self.cell_indices(origin + deltas[beam] * fraction[:, None])

    def cell_indices(self, points_xy_m: FloatArray) -> tuple[NDArray[np.int64],
                                                            NDArray[np.int64]]:
        """(rows, cols) of the cells holding map points (N, 2); may be outside the grid."""
        cells = np.floor((np.asarray(points_xy_m)[:, :2] - self.origin_xy_m)
                         / self.resolution_m).astype(np.int64)
        return cells[:, 1], cells[:, 0]

    def _grow_to(self, points_xy: FloatArray) -> None:
        """Enlarge the grid (by at least the margin) so every point lies inside it."""
        lo, hi = points_xy.min(axis=0), points_xy.max(axis=0)
        res = self.resolution_m
        if self.log_odds.size == 0:
            margin = self.grow_margin_m
            self.origin_xy_m = np.floor((lo - margin) / res) * res
            cols, rows = (np.ceil((hi + margin - self.origin_xy_m) / res)).astype(int)
            self.log_odds = np.zeros((rows, cols), dtype=np.float32)
            return
        rows, cols = self.shape
        top_right = self.origin_xy_m + res * np.array([cols, rows])
        if (lo >= self.origin_xy_m).all() and (hi < top_right).all():
            return
        margin_cells = math.ceil(self.grow_margin_m / res)
        add_low = np.where(lo < self.origin_xy_m,
                           np.ceil((self.origin_xy_m - lo) / res).astype(int) + margin_cells, 0)
        add_high = np.where(hi >= top_right,
                            np.ceil((hi - top_right) / res).astype(int) + 1 + margin_cells, 0)
        grown = np.zeros((rows + add_low[1] + add_high[1], cols + add_low[0] + add_high[0]),
                         dtype=np.float32)
        grown[add_low[1]:add_low[1] + rows, add_low[0]:add_low[0] + cols] = self.log_odds
        self.log_odds = grown
        self.origin_xy_m = self.origin_xy_m - res * add_low

    # --- reading out ----------------------------------------------------------------------

    def probability(self) -> NDArray[np.float32]:
        """Occupancy probability per cell (0.5 where unknown)."""
        return (1.0 / (1.0 + np.exp(-self.log_odds))).astype(np.float32)

    def to_map(self, occupied_thresh: float = OCCUPIED_THRESH,
               free_thresh: float = FREE_THRESH, crop: bool = True) -> OccupancyMap:
        """Trinary map (map_server thresholds); ``crop`` trims to the observed cells + 1."""
        p = self.probability()
        cells: NDArray[np.int8] = np.full(p.shape, CELL_UNKNOWN, dtype=np.int8)
        cells[p > occupied_thresh] = CELL_OCCUPIED
        cells[p < free_thresh] = CELL_FREE
        origin = self.origin_xy_m.copy()
        if crop:
            observed_rows = np.flatnonzero((self.log_odds != 0).any(axis=1))
            observed_cols = np.flatnonzero((self.log_odds != 0).any(axis=0))
            if observed_rows.size == 0:
                return OccupancyMap(np.full((1, 1), CELL_UNKNOWN, dtype=np.int8),
                                    self.resolution_m, (float(origin[0]), float(origin[1])))
            r0 = max(int(observed_rows[0]) - 1, 0)
            r1 = min(int(observed_rows[-1]) + 2, cells.shape[0])
            c0 = max(int(observed_cols[0]) - 1, 0)
            c1 = min(int(observed_cols[-1]) + 2, cells.shape[1])
            cells = cells[r0:r1, c0:c1]
            origin += self.resolution_m * np.array([c0, r0])
        return OccupancyMap(np.ascontiguousarray(cells), self.resolution_m,
                            (float(origin[0]), float(origin[1])))


# --- map_server files -----------------------------------------------------------------------


def write_map(grid: OccupancyGrid | OccupancyMap, out_dir: str | Path,
              name: str = "map") -> tuple[Path, Path]:
    """Write ``name.pgm`` and ``name.yaml`` (ROS map_server format); return their paths.

    Each file is written aside and renamed into place, so a crash leaves no partial map.
    """
    occupancy = grid.to_map() if isinstance(grid, OccupancyGrid) else grid
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pgm_path, yaml_path = out / f"{name}.pgm", out / f"{name}.yaml"
    # Image rows run top-down: the first row is the largest y.
    cells = occupancy.cells[::-1]
    image: NDArray[np.uint8] = np.full(cells.shape, PGM_UNKNOWN, dtype=np.uint8)
    image[cells == CELL_FREE] = PGM_FREE
    image[cells == CELL_OCCUPIED] = PGM_OCCUPIED
    height, width = image.shape
    header = (f"P5\n# CREATOR: crawler navigation.occupancy {occupancy.resolution_m:.3f} m/pix\n"
              f"{width} {height}\n255\n").encode("ascii")
    x, y = occupancy.origin_xy_m
    text = (f"image: {pgm_path.name}\n"
            "mode: trinary\n"
            f"resolution: {occupancy.resolution_m!r}\n"
            f"origin: [{x!r}, {y!r}, {occupancy.origin_yaw_rad!r}]\n"
            "negate: 0\n"
            f"occupied_thresh: {OCCUPIED_THRESH}\n"
            f"free_thresh: {FREE_THRESH}\n")
    try:
        _write_atomically(pgm_path, header + image.tobytes())
        _write_atomically(yaml_path, text.encode("utf-8"))
    except OSError as err:
        raise MapError(f"{out}: cannot write the map: {err.strerror}") from err
    return pgm_path, yaml_path


def read_map(yaml_path: str | Path) -> OccupancyMap:
    """Read a map_server map (``.yaml`` and its 8-bit PGM); ``MapError`` if malformed."""
    path = Path(yaml_path)
    try:
        meta = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise MapError(f"{path}: cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise MapError(f"{path}: malformed YAML: {' '.join(str(err).split())}") from err
    if not isinstance(meta, dict):
        raise MapError(f"{path}: not a map description (expected a mapping)")
    try:
        image_path = path.parent / str(meta["image"])
        resolution = float(meta["resolution"])
        ox, oy, oyaw = (float(v) for v in meta["origin"])
        negate = int(meta.get("negate", 0))
        occupied_thresh = float(meta.get("occupied_thresh", OCCUPIED_THRESH))
        free_thresh = float(meta.get("free_thresh", FREE_THRESH))
    except KeyError as err:
        raise MapError(f"{path}: missing key {err}") from err
    except (TypeError, ValueError) as err:
        raise MapError(f"{path}: bad value: {err}") from err
    image = _read_pgm(image_path)
    p = image.astype(np.float64) / 255.0 if negate else (255.0 - image) / 255.0
    cells = np.full(image.shape, CELL_UNKNOWN, dtype=np.int8)
    cells[p > occupied_thresh] = CELL_OCCUPIED
    cells[p < free_thresh] = CELL_FREE
    return OccupancyMap(np.ascontiguousarray(cells[::-1]), resolution, (ox, oy), oyaw)


def _read_pgm(path: Path) -> NDArray[np.uint8]:
    """Binary (P5) 8-bit PGM, comments allowed in the header."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MapError(f"{path}: cannot read: {err.strerror}") from err
    tokens: list[bytes] = []
    pos = 0
    while len(tokens) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.find(b"\n", pos) + 1 or len(data)
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace():
            pos += 1
        if start == pos:
            raise MapError(f"{path}: truncated PGM header")
        tokens.append(data[start:pos])
    pos += 1  # the single whitespace after maxval
    if tokens[0] != b"P5":
        raise MapError(f"{path}: not a binary PGM (magic {tokens[0]!r})")
    try:
        width, height, maxval = (int(t) for t in tokens[1:])
    except ValueError as err:
        raise MapError(f"{path}: bad PGM header: {err}") from err
    if maxval != 255:
        raise MapError(f"{path}: only 8-bit PGM is supported (maxval {maxval})")
    pixels = np.frombuffer(data, dtype=np.uint8, count=len(data) - pos, offset=pos)
    if pixels.size < width * height:
        raise MapError(f"{path}: {pixels.size} pixels, header says {width} x {height}")
    return pixels[:width * height].reshape(height, width).copy()


def _write_atomically(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        tmp.write_bytes(content)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
