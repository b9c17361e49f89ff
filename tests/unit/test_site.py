"""Site files: round trip, errors with file/line/field, axes, and derivation from ground truth."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from navigation.geodesy import GeodeticOrigin
from navigation.site import (
    Axis,
    Landmark,
    LandmarkKind,
    Site,
    SiteFieldError,
    SiteFileError,
    SiteType,
    TetherCalibration,
    dump_site,
    load_site,
    parse_site,
    site_from_truth,
)
from sim_worlds.worldgen.truth import WorldTruth, load_truth

REPO = Path(__file__).resolve().parents[2]
WORLDS = sorted((REPO / "sim_worlds" / "worlds").glob("*.truth.yaml"))

PIPE = Site(
    name="demo pipe",
    site_type=SiteType.PIPE,
    origin=GeodeticOrigin(30.5928, 114.3055, 23.5, 90.0),
    axes=(Axis("MH-A/MH-B", ((0.0, 0.0, -4.0), (0.6, 0.0, -4.0), (100.6, 0.0, -4.2)),
               start_distance_m=-0.6, description="DN1000 concrete"),),
    landmarks=(
        Landmark("MH-A", LandmarkKind.MANHOLE, (0.0, 0.0, -4.0), 0.6, "MH-A/MH-B", -0.6),
        Landmark("L1", LandmarkKind.LATERAL, (47.6, 0.0, -4.1), 0.5, "MH-A/MH-B", 47.0,
                 "DN300 lateral at 3 o'clock"),
        Landmark("MH-B", LandmarkKind.MANHOLE, (100.6, 0.0, -4.2), 0.6),
    ),
    tether=TetherCalibration("MH-A/MH-B", zero_distance_m=-0.6, stretch_nominal=0.004,
                             stretch_sigma=0.001),
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize("site", [PIPE, *(site_from_truth(load_truth(p)) for p in WORLDS)],
                         ids=["demo", *(p.name.split(".")[0] for p in WORLDS)])
def test_dump_then_load_gives_the_same_site(tmp_path: Path, site: Site) -> None:
    assert load_site(_write(tmp_path, dump_site(site))) == site


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    text = dump_site(PIPE).replace("  kind: lateral", "  kind: [lateral")
    path = _write(tmp_path, text)
    with pytest.raises(SiteFileError, match="malformed YAML") as err:
        load_site(path)
    assert err.value.line is not None
    bad = _line_of(text, "kind: [lateral")
    assert bad <= err.value.line <= bad + 2
    assert str(err.value).startswith(f"{path}:{err.value.line}: ")


def test_missing_field_names_the_field_and_its_parents_line(tmp_path: Path) -> None:
    text = dump_site(PIPE)
    text = "\n".join(line for line in text.splitlines() if "latitude_deg" not in line)
    path = _write(tmp_path, text)
    with pytest.raises(SiteFileError, match=r"origin\.latitude_deg: missing required field"):
        load_site(path)
    with pytest.raises(SiteFileError, match=f":{_line_of(text, 'origin:')}: "):
        load_site(path)


@pytest.mark.parametrize(("edit", "field", "reason"), [
    (("kind: lateral", "kind: culvert"), "landmarks[1].kind", "expected one of manhole"),
    (("detection_radius_m: 0.5", "detection_radius_m: -0.5"), "landmarks[1].detection_radius_m",
     "must be > 0"),
    (("  distance_m: 47.0", "  distance_m: 47.0\n  colour: red"), "landmarks[1].colour",
     "unknown field"),
    (("  axis: MH-A/MH-B\n  distance_m: 47.0", "  axis: MH-X\n  distance_m: 47.0"),
     "landmarks[1].axis", "unknown axis 'MH-X'"),
    (("datum: CGCS2000", "datum: WGS84"), "origin.datum", "expected CGCS2000"),
    (("- [0.6, 0.0, -4.0]", "- [0.6, 0.0]"), "axes[0].waypoints_m[1]", "expected [x, y, z]"),
    (("stretch_sigma: 0.001", "stretch_sigma: 0.0"), "tether.stretch_sigma", "must be > 0"),
    (("site_type: pipe", "site_type: culvert"), "site_type", "expected one of pipe"),
])
def test_invalid_values_name_field_and_line(tmp_path: Path, edit: tuple[str, str], field: str,
                                            reason: str) -> None:
    text = dump_site(PIPE)
    assert edit[0] in text
    text = text.replace(edit[0], edit[1], 1)
    with pytest.raises(SiteFileError, match=re.escape(f"{field}: {reason}")) as err:
        load_site(_write(tmp_path, text))
    assert err.value.field_path == field
    assert err.value.line is not None and err.value.line > 3


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SiteFileError, match="cannot read"):
        load_site(tmp_path / "missing.yaml")
    with pytest.raises(SiteFileError, match="empty file"):
        load_site(_write(tmp_path, "# nothing\n"))


def test_records_validate_themselves() -> None:
    with pytest.raises(SiteFieldError, match="waypoints_m"):
        Axis("a", ((0.0, 0.0, 0.0),))
    with pytest.raises(SiteFieldError, match=r"landmarks\[1\].id: duplicate"):
        Site("s", SiteType.TUNNEL, PIPE.origin, PIPE.axes, (PIPE.landmarks[0],) * 2)


def test_axis_chainage_with_a_datum_inside_the_axis() -> None:
    axis = PIPE.axes[0]
    assert axis.project([10.6, 0.3, -4.0]).distance_m == pytest.approx(10.0, abs=1e-3)
    assert axis.project([10.6, 0.3, -4.0]).offset_m == pytest.approx(0.3, abs=1e-6)
    np.testing.assert_allclose(axis.point_at(0.0), [0.6, 0.0, -4.0])
    assert axis.end_distance_m == pytest.approx(100.0, abs=1e-3)
    # Past the ends the unclamped chainage keeps growing; the clamped projection stops.
    beyond, direction = axis.chainage_and_direction([110.6, 0.0, -4.2])
    assert beyond == pytest.approx(110.0, abs=1e-3)
    assert axis.project([110.6, 0.0, -4.2]).distance_m == pytest.approx(100.0, abs=1e-3)
    np.testing.assert_allclose(direction, [1.0, 0.0, -0.002], atol=1e-5)
    T = axis.pose_at(50.0)
    np.testing.assert_allclose(T[:3, 3], axis.point_at(50.0))


def test_locate_prefers_the_current_axis_near_a_junction() -> None:
    site = site_from_truth(load_truth(REPO / "sim_worlds/worlds/utility_tunnel.truth.yaml"))
    axis, where = site.locate([250.0, 0.1, 0.0])
    assert axis.name == "main" and where.distance_m == pytest.approx(250.0)
    # At the junction the branch is nearer, but the robot is still counted on the main.
    axis, where = site.locate([300.2, -0.3, 0.0])
    assert axis.name == "branch" and where.distance_m == pytest.approx(-1.3)
    axis, where = site.locate([300.2, -0.3, 0.0], prefer="main")
    assert axis.name == "main" and where.distance_m == pytest.approx(300.2)
    axis, _ = site.locate([300.0, -20.0, 0.0], prefer="main")
    assert axis.name == "branch"


def _truth_site(world: str) -> tuple[Site, WorldTruth]:
    truth = load_truth(REPO / f"sim_worlds/worlds/{world}.truth.yaml")
    return site_from_truth(truth), truth


def test_sewer_site_has_both_manholes_the_lateral_and_no_defects() -> None:
    site, truth = _truth_site("sewer_dn1000")
    kinds = {m.id: m.kind for m in site.landmarks}
    assert kinds == {"MH-A": LandmarkKind.MANHOLE, "MH-B": LandmarkKind.MANHOLE,
                     "L1": LandmarkKind.LATERAL}
    assert site.site_type is SiteType.PIPE and len(site.axes) == 1
    axis = site.axes[0]
    # The CJJ 181 datum (distance 0) is the pipe entrance; manhole B is 120 m + its wall on.
    assert site.landmark("MH-A").distance_m == pytest.approx(-0.599)
    assert site.landmark("MH-B").distance_m == pytest.approx(120.6, abs=0.01)
    assert axis.project(site.landmark("L1").position_m).distance_m == pytest.approx(47.0, abs=1e-3)
    assert site.tether is not None and site.tether.zero_distance_m == pytest.approx(-0.599)
    assert truth.pipe is not None
    text = dump_site(site)
    for defect in truth.pipe.defects:
        assert defect.id not in text and defect.description not in text


def test_tunnel_site_has_shafts_fire_doors_junction_and_no_defects() -> None:
    site, truth = _truth_site("utility_tunnel")
    by_kind: dict[LandmarkKind, set[str]] = {}
    for m in site.landmarks:
        by_kind.setdefault(m.kind, set()).add(m.id)
    assert by_kind[LandmarkKind.SHAFT] == {"SH1", "SH2", "SH3"}
    assert by_kind[LandmarkKind.FIRE_DOOR] == {"FD1", "FD2"}
    assert by_kind[LandmarkKind.JUNCTION] == {"J-main-branch"}
    assert {a.name for a in site.axes} == {"main", "branch"}
    # Shafts are landmarks where the robot stands: on the floor under the opening.
    assert site.landmark("SH2").position_m == (350.0, 0.0, 0.0)
    assert site.landmark("J-main-branch").position_m == (300.0, 0.0, 0.0)
    assert site.tether is None
    text = dump_site(site)
    tunnel = truth.tunnel
    assert tunnel is not None
    for feature in tunnel.surface_features:
        assert feature.id not in text
    for antenna in tunnel.antennas:
        assert antenna.id not in text


def test_shelter_site_has_corridor_axes_the_ramp_and_doorways() -> None:
    site, _ = _truth_site("civil_defence_shelter")
    assert site.site_type is SiteType.SHELTER
    assert {"C-S", "C-E", "C-N", "C-W", "C-B2", "RAMP"} == {a.name for a in site.axes}
    assert len(site.landmarks) == 12
    assert all(m.kind is LandmarkKind.DOOR for m in site.landmarks)
    door = site.landmark("D-R01")
    assert door.axis == "C-S" and door.distance_m == pytest.approx(7.3)


def test_the_documented_example_is_a_valid_site_file() -> None:
    doc = (REPO / "docs" / "site_file.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    assert blocks, "docs/site_file.md has no yaml example"
    site = parse_site(yaml.safe_load(blocks[0]), "docs/site_file.md")
    assert site.tether is not None and site.landmarks
    # Every field the loader knows appears in the example.
    for key in ("site_file_version", "name", "site_type", "description", "origin", "datum",
                "latitude_deg", "longitude_deg", "height_m", "x_axis_azimuth_deg", "axes",
                "start_distance_m", "waypoints_m", "landmarks", "kind", "position_m",
                "detection_radius_m", "axis", "distance_m", "tether", "zero_distance_m",
                "stretch_nominal", "stretch_sigma"):
        assert f"{key}:" in blocks[0], key
