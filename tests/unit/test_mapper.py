"""The defect mapper: camera findings joined with lidar measurements, graded, evaluated."""

from __future__ import annotations

import math

import numpy as np
import pytest

import perception.mapper as mapper_module
from perception.detectors.base import Detection
from perception.findings import Finding, FindingTracker
from perception.grading import SiteFactors
from perception.mapper import DefectMapper
from perception.pipe_geometry import INTRUSION, GeometricDefect
from tests.unit.test_findings import CAMERA, PIPE, camera_at, patch_box

LENGTH_M = 100.0


def mapper_with_lidar(monkeypatch: pytest.MonkeyPatch, lidar: list[GeometricDefect],
                      sensor_to_m: float = LENGTH_M) -> DefectMapper:
    """A mapper whose lidar analysis returns ``lidar`` (scans so the cloud is not empty, the
    sensor driving from 1.5 m to ``sensor_to_m``)."""
    monkeypatch.setattr(mapper_module, "find_geometric_defects", lambda *a, **k: list(lidar))
    mapper = DefectMapper(PIPE, CAMERA, wall_thickness_m=0.1,
                          tracker=FindingTracker(PIPE, CAMERA))
    ring = np.array([[x, 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)]
                     for x in np.linspace(1.0, 2.0, 5) for a in np.linspace(0, 6, 40)])
    for sensor_m in (1.5, sensor_to_m):
        mapper.add_scan(ring, np.array([sensor_m, 0.0, 0.5]))
    return mapper


def see(mapper: DefectMapper, code: str, x0: float, x1: float, clock: float, arc: float) -> None:
    """Drive the camera towards a wall patch, detecting it in every frame it is in view."""
    for i, x in enumerate(np.linspace(x0 - 5.0, x0 - 0.7, 25)):
        T = camera_at(float(x))
        mapper.add_frame(i * 10**8 + int(x0 * 1e9), [Detection(code, patch_box(x0, x1, clock,
                                                                               arc, T), 0.8)], T)


def test_lidar_measurement_grades_the_camera_finding_and_places_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lidar = [GeometricDefect("CK", 38.0, 38.0, {"offset_m": 0.06, "offset_ratio_of_wall": 0.6},
                             3.0)]
    mapper = mapper_with_lidar(monkeypatch, lidar)
    see(mapper, "CK", 38.1, 38.3, 12.0, 12.0)
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    (ck,) = segment.findings
    assert ck.finding.source == "camera+lidar"
    assert ck.finding.start_m == 38.0  # the lidar places ring defects
    assert ck.grade == 2  # 0.6 wall thickness: (0.5, 1] -> grade 2
    assert ck.score == pytest.approx(2.0)
    assert "offset_ratio_of_wall" in ck.grade_basis


def test_deformation_comes_from_the_lidar_alone_and_manhole_walls_are_not_joints(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lidar = [GeometricDefect("BX", 22.0, 24.0, {"ovality_pct_of_d": 9.9}, 12.0),
             GeometricDefect("TJ", 0.1, 0.15, {"gap_mm": 50.0}, 3.0),  # pipe meets manhole A
             GeometricDefect("TJ", 99.8, 99.9, {"gap_mm": 50.0}, 3.0)]  # and manhole B
    mapper = mapper_with_lidar(monkeypatch, lidar)
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    assert [(f.finding.code, f.finding.source, f.grade) for f in segment.findings] == [
        ("BX", "lidar", 2)]
    # One structural defect, score 2: S = Smax = F = 2
    assert abs(segment.evaluation.F - 2.0) < 1e-9


def test_roots_are_graded_from_the_lidar_intrusion_as_area_loss(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A 0.28 m hang in a 0.5 m radius bore cuts off a circular segment of 22.9 % of the area
    lidar = [GeometricDefect(INTRUSION, 83.7, 84.3, {"intrusion_m": 0.28}, 12.0)]
    mapper = mapper_with_lidar(monkeypatch, lidar)
    see(mapper, "SG", 83.7, 84.3, 12.0, 3.0)
    (sg,) = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M).findings
    assert sg.measured["area_loss_pct"] == pytest.approx(22.92, abs=0.05)
    assert sg.grade == 2  # 15 < 22.9 <= 25
    assert sg.finding.source == "camera+lidar"


def test_visual_classes_are_graded_by_extent_and_flagged_as_heuristic(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = mapper_with_lidar(monkeypatch, [])
    see(mapper, "PL", 14.0, 15.2, 12.0, 1.0)
    (pl,) = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M).findings
    assert pl.finding.length_m > 0.3
    assert pl.grade == 2
    assert pl.grade_basis.startswith("extent heuristic")
    assert any("heuristic" in u for u in pl.unverified)


def test_findings_in_the_manholes_are_kept_but_not_scored(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = mapper_with_lidar(monkeypatch, [])
    see(mapper, "SL", 101.0, 101.5, 3.0, 1.0)  # past the 100 m segment, in manhole B
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    assert [f.finding.code for f in segment.findings] == ["SL"]
    assert segment.evaluation.F == 0.0


def test_a_joint_the_camera_flags_but_the_lidar_measured_sound_is_rejected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    mapper = mapper_with_lidar(monkeypatch, [])
    ring = np.array([[x, 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)]
                     for x in np.linspace(9.5, 10.8, 14) for a in np.linspace(0, 6.2, 60)])
    mapper.add_scan(ring, np.array([10.0, 0.0, 0.5]))
    see(mapper, "CK", 10.1, 10.3, 12.0, 12.0)  # the camera thinks the joint at 10.2 m is offset
    see(mapper, "CK", 30.1, 30.3, 12.0, 12.0)  # no lidar there: the camera's word stands
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    assert [f.finding.code for f in segment.findings] == ["CK"]
    assert segment.findings[0].finding.start_m > 29.0
    assert any("rejected" in line and "10." in line for line in segment.ungraded)


def test_an_open_joint_needs_the_camera_and_twice_seen_defects_are_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lidar = [GeometricDefect("TJ", 50.0, 50.05, {"gap_mm": 40.0}, 3.0)]  # lidar alone: not enough
    mapper = mapper_with_lidar(monkeypatch, lidar)
    see(mapper, "SL", 60.0, 60.5, 3.0, 1.0)
    see(mapper, "SL", 60.3, 60.8, 3.0, 1.0)  # the same leak, its track lost and found again
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    assert [f.finding.code for f in segment.findings] == ["SL"]
    (leak,) = segment.findings
    assert leak.finding.start_m == pytest.approx(60.0, abs=0.15)
    assert leak.finding.frames >= 40


def camera_finding(number: int, code: str, start_m: float, end_m: float) -> Finding:
    """A finding as the tracker makes it (seen in 20 frames)."""
    return Finding(f"F{number:03d}", code, start_m, end_m, 12.0, (start_m, 0.0, 1.0), 0.8, 20,
                   0, 10**9, 5 * 10**8, (0.0, 0.0, 10.0, 10.0), True)


def test_offset_joints_two_metres_apart_stay_two_findings_each_with_its_measurement(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lidar = [GeometricDefect("CK", s, s, {"offset_m": 0.06, "offset_ratio_of_wall": 0.6}, 3.0)
             for s in (38.0, 40.0)]
    mapper = mapper_with_lidar(monkeypatch, lidar)
    ring = np.array([[x, 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a)]
                     for x in np.linspace(37.0, 41.0, 41) for a in np.linspace(0, 6.2, 60)])
    mapper.add_scan(ring, np.array([39.0, 0.0, 0.5]))
    # Each joint seen, plus a stretched view between them that nearly touches both: one
    # defect class 0.35-0.4 m apart, but joint defects further apart than 0.3 m are two
    mapper.camera_findings.extend([camera_finding(1, "CK", 37.95, 38.1),
                                   camera_finding(2, "CK", 38.45, 39.1),
                                   camera_finding(3, "CK", 39.5, 40.2)])
    segment = mapper.finish(SiteFactors(dn_mm=1000), LENGTH_M)
    assert [(f.finding.id, f.finding.start_m, f.finding.source) for f in segment.findings] == [
        ("F001", 38.0, "camera+lidar"), ("F003", 40.0, "camera+lidar")]
    assert any(line.startswith("F002 CK at 38.45 m: rejected") for line in segment.ungraded)


def test_lidar_only_defects_count_where_the_sensor_passed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A mission that turned back at 20 m saw the wall at 22-24 m only from afar
    lidar = [GeometricDefect("BX", 22.0, 24.0, {"ovality_pct_of_d": 9.9}, 12.0)]
    turned_back = mapper_with_lidar(monkeypatch, lidar, sensor_to_m=20.0)
    assert turned_back.finish(SiteFactors(dn_mm=1000), LENGTH_M).findings == ()
    passed = mapper_with_lidar(monkeypatch, lidar, sensor_to_m=23.0)
    assert [f.finding.code for f in passed.finish(SiteFactors(dn_mm=1000), LENGTH_M).findings
            ] == ["BX"]
