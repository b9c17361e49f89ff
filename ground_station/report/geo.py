"""defects.geojson: the findings as CGCS2000 (EPSG:4490) points.

Each finding's lon/lat comes from the findings table; where the table has none, from its
site-frame x/y/z through the site's ``SiteFrame`` (the plan's site file, or the simulated
world's truth for ``world:NAME``). A finding with neither gets a null geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ground_station.report.codes import code_names
from ground_station.report.folder import Finding, Mission
from navigation.geodesy import SiteFrame
from navigation.site import SiteFileError, load_site, site_from_truth

CRS_NAME = "urn:ogc:def:crs:EPSG::4490"
WORLD_PREFIX = "world:"
_DEGREE_DIGITS = 9  # 1e-9 degree is 0.1 mm


def site_frame(mission: Mission) -> tuple[SiteFrame | None, str | None]:
    """The site frame of the plan's site (or the mission's world); (None, why) when unknown."""
    site_file = mission.plan.get("site_file")
    source = str(site_file) if site_file else (
        f"{WORLD_PREFIX}{mission.world}" if mission.world else None)
    if source is None:
        return None, "the plan names no site file and the mission no world"
    try:
        if source.startswith(WORLD_PREFIX):
            from sim_worlds.worldgen import WORLDS_DIR
            from sim_worlds.worldgen.truth import TruthFormatError, load_truth

            truth_path = WORLDS_DIR / f"{source.removeprefix(WORLD_PREFIX)}.truth.yaml"
            try:
                return site_from_truth(load_truth(truth_path)).frame(), None
            except TruthFormatError as err:
                return None, f"cannot load the world's truth: {err}"
        path = Path(source)
        if not path.is_absolute():
            path = mission.path.parent / path
        return load_site(path).frame(), None
    except (SiteFileError, OSError, ValueError) as err:
        return None, f"cannot load the site {source}: {err}"


def finding_properties(f: Finding, number: int, segment_id: str | None) -> dict[str, Any]:
    """Every column of the finding, plus its number in the report and the code's names."""
    names = code_names(f.code)
    return {
        "no": number,
        "id": f.id,
        "segment_id": segment_id,
        "code": f.code,
        "name_zh": names[0] if names else None,
        "name_en": names[1] if names else None,
        "grade": f.grade,
        "score": f.score,
        "start_m": f.start_m,
        "end_m": f.end_m,
        "length_m": round(f.length_m, 6),
        "clock_h": f.clock_h,
        "x": None if f.xyz is None else f.xyz[0],
        "y": None if f.xyz is None else f.xyz[1],
        "z": None if f.xyz is None else f.xyz[2],
        "confidence": f.confidence,
        "frames": f.frames,
        "source": f.source,
        "grade_basis": f.grade_basis,
        "measured": dict(f.measured),
        "unverified": list(f.unverified),
        "photo": f.photo,
        "status": f.status,
        "stamp_ns": f.stamp_ns,
    }


def defects_geojson(findings: Sequence[Finding], numbers: Mapping[str, int], mission: Mission
                    ) -> tuple[dict[str, Any], list[str]]:
    """The FeatureCollection and notes on findings that could not be placed."""
    segment_id = mission.asset.get("segment_id")
    segment = None if segment_id is None else str(segment_id)
    frame: SiteFrame | None = None
    frame_problem: str | None = None
    if any(f.lat_lon is None and f.xyz is not None for f in findings):
        frame, frame_problem = site_frame(mission)
    notes: list[str] = []
    features = []
    for f in findings:
        props = finding_properties(f, numbers[f.id], segment)
        geometry: dict[str, Any] | None = None
        lat_lon: tuple[float, float] | None = f.lat_lon
        props["lonlat_from"] = "table"
        if lat_lon is None and f.xyz is not None and frame is not None:
            lat, lon, _ = frame.to_geodetic(list(f.xyz))[0]
            lat_lon = (float(lat), float(lon))
            props["lonlat_from"] = "site_frame"
        if lat_lon is None:
            props["lonlat_from"] = None
            why = frame_problem if f.xyz is not None else "no lat/lon and no site position"
            notes.append(f"{f.id}: not placed on the map ({why})")
        else:
            geometry = {"type": "Point",
                        "coordinates": [round(lat_lon[1], _DEGREE_DIGITS),
                                        round(lat_lon[0], _DEGREE_DIGITS)]}
        features.append({"type": "Feature", "id": f.id, "geometry": geometry,
                         "properties": props})
    doc = {
        "type": "FeatureCollection",
        "name": f"defects {segment or mission.name}".strip(),
        "crs": {"type": "name", "properties": {"name": CRS_NAME}},
        "mission": {"name": mission.name, "state": mission.state, "segment_id": segment},
        "features": features,
    }
    return doc, notes
