"""CJJ 181-2012 grading: tables, measured grades, segment evaluation worked by hand, mapping.

Every expected figure is computed in the comments from the formulas of
DEFECT_STANDARDS.md section 3.1, not by calling the code under test.
"""

# The formula symbols (ev.S, ev.F, ev.RI) are upper case, so ruff's SIM300 takes them for
# constants and asks for "Yoda" comparisons; the formulas read better as written.
# ruff: noqa: SIM300

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from perception.codes import ALL_CODES, FUNCTIONAL_CODES, STRUCTURAL_CODES, DefectKind
from perception.errors import GradingError
from perception.grading import (
    BelowThresholdError,
    CloseSpacing,
    DefectRecord,
    EvaluationOptions,
    GradingTableError,
    NotScoredError,
    RepairScope,
    SiteFactors,
    SpacingClass,
    UnknownCodeError,
    default_mapping,
    default_standard,
    evaluate_segment,
    grade_from_measurement,
    load_mapping,
    load_standard,
    score,
    to_en13508,
    to_pacp,
)
from perception.grading.mapping import DEFAULT_MAPPING_FILE
from perception.grading.tables import DEFAULT_STANDARD_FILE, Band
from sim_worlds.worldgen import cjj181 as worldgen_rules

STD = "CJJ 181-2012"


def _point(code: str, grade: int, at_m: float) -> DefectRecord:
    return DefectRecord(code, grade, at_m, at_m)


# ---------------------------------------------------------------- tables


# Scores copied by hand from DEFECT_STANDARDS.md 3.1 (functional ones are [G] there).
REFERENCE_SCORES: dict[str, tuple[float, ...]] = {
    "PL": (0.5, 2, 5, 10),
    "BX": (1, 2, 5, 10),
    "FS": (0.5, 2, 5),
    "CK": (0.5, 2, 5, 10),
    "QF": (0.5, 2, 5, 10),
    "TJ": (1, 3, 5, 10),
    "TL": (1, 3),
    "AJ": (0.5, 2, 5),
    "CR": (0.5, 2, 5),
    "SL": (0.5, 2, 5, 10),
    "CJ": (0.5, 2, 5, 10),
    "JG": (0.5, 2, 5, 10),
    "ZW": (0.1, 2, 5, 10),
    "CQ": (1, 3, 5, 10),
    "SG": (0.5, 2, 5, 10),
}


@pytest.mark.parametrize("code", sorted(REFERENCE_SCORES))
def test_scores_match_the_reference_table(code: str) -> None:
    expected = REFERENCE_SCORES[code]
    assert [score(code, g) for g in range(1, len(expected) + 1)] == list(expected)
    with pytest.raises(GradingError, match=f"{code} has no grade {len(expected) + 1}"):
        score(code, len(expected) + 1)


def test_every_cjj_code_has_a_table_entry_of_its_kind_and_a_mapping_row() -> None:
    std = default_standard()
    assert set(std.defects) == set(ALL_CODES)
    for code in STRUCTURAL_CODES:
        assert std.entry(code).kind is DefectKind.STRUCTURAL
    for code in FUNCTIONAL_CODES:
        assert std.entry(code).kind is DefectKind.FUNCTIONAL
    assert set(default_mapping().rows) == set(ALL_CODES)


def test_nothing_is_marked_verified_and_guessed_rows_say_so() -> None:
    std = default_standard()
    rows = [row for entry in std.defects.values() for row in entry.grades]
    assert rows
    assert not any(row.provenance.verified for row in rows)
    # Functional scores are [G] in the reference; FZ grades 2 and 3 are [G] too.
    for code in ("CJ", "JG", "ZW", "CQ", "SG"):
        assert all(row.provenance.guessed for row in std.entry(code).grades)
    assert [row.provenance.source for row in std.entry("FZ").grades] == ["S", "G", "G"]
    assert not any(row.provenance.guessed for row in std.entry("PL").grades)
    assert not any(row.verified for row in default_mapping().rows.values())


def test_fz_is_recorded_but_not_scored() -> None:
    with pytest.raises(NotScoredError, match="FZ is recorded but not scored"):
        score("FZ", 1)
    result = grade_from_measurement("FZ", {"surface_cover_pct": 45.0})
    assert (result.grade, result.score, result.source) == (2, None, "G")


def test_unknown_code_raises_grading_error() -> None:
    with pytest.raises(UnknownCodeError, match="'XX'"):
        score("XX", 1)
    with pytest.raises(GradingError, match="'XX'"):
        grade_from_measurement("XX", {"area_loss_pct": 10.0})
    with pytest.raises(GradingError, match="'XX'"):
        evaluate_segment([_point("XX", 1, 1.0)], 10.0, SiteFactors(dn_mm=300))
    with pytest.raises(GradingError, match="'XX'"):
        to_pacp("XX")


# ---------------------------------------------------------------- grade from measurement

# Bands are lower-exclusive, upper-inclusive: the limit itself is the lower grade.
BAND_EDGES = [
    ("BX", "ovality_pct_of_d", 0.0, 1),
    ("BX", "ovality_pct_of_d", 5.0, 1),
    ("BX", "ovality_pct_of_d", 5.01, 2),
    ("BX", "ovality_pct_of_d", 15.0, 2),
    ("BX", "ovality_pct_of_d", 15.01, 3),
    ("BX", "ovality_pct_of_d", 25.0, 3),
    ("BX", "ovality_pct_of_d", 25.01, 4),
    ("CK", "offset_ratio_of_wall", 0.5, 1),
    ("CK", "offset_ratio_of_wall", 0.51, 2),
    ("CK", "offset_ratio_of_wall", 1.0, 2),
    ("CK", "offset_ratio_of_wall", 2.0, 3),
    ("CK", "offset_ratio_of_wall", 2.01, 4),
    ("TJ", "gap_mm", 0.0, 2),  # grade 1 (soil intrusion) is by appearance only
    ("TJ", "gap_mm", 20.0, 2),
    ("TJ", "gap_mm", 20.5, 3),
    ("TJ", "gap_mm", 50.0, 3),
    ("TJ", "gap_mm", 51.0, 4),
    ("CJ", "depth_pct_of_d", 20.0, 1),  # the minimum itself is a defect
    ("CJ", "depth_pct_of_d", 30.0, 1),
    ("CJ", "depth_pct_of_d", 30.01, 2),
    ("CJ", "depth_pct_of_d", 40.0, 2),
    ("CJ", "depth_pct_of_d", 50.0, 3),
    ("CJ", "depth_pct_of_d", 50.01, 4),
    ("JG", "area_loss_pct", 15.0, 1),
    ("JG", "area_loss_pct", 50.01, 4),
    ("JG", "soft_area_loss_pct", 15.0, 1),
    ("JG", "soft_area_loss_pct", 25.01, 2),
    ("JG", "soft_area_loss_pct", 80.0, 3),
    ("JG", "soft_area_loss_pct", 80.01, 4),
    ("SG", "area_loss_pct", 15.0, 1),
    ("SG", "area_loss_pct", 25.0, 2),
    ("ZW", "area_loss_pct", 50.0, 3),
    ("CQ", "area_loss_pct", 50.01, 4),
    ("AJ", "intrusion_pct_of_d", 10.0, 1),
    ("AJ", "intrusion_pct_of_d", 20.0, 2),
    ("AJ", "intrusion_pct_of_d", 20.01, 3),
    ("QF", "rise_pct_of_d", 35.0, 2),
    ("QF", "rise_pct_of_d", 35.01, 3),
    ("QF", "rise_pct_of_d", 50.01, 4),
    ("CR", "area_pct", 10.0, 1),
    ("CR", "area_pct", 30.0, 2),
    ("CR", "area_pct", 30.01, 3),
]


@pytest.mark.parametrize(("code", "quantity", "value", "grade"), BAND_EDGES)
def test_grade_from_measurement_at_band_edges(
    code: str, quantity: str, value: float, grade: int
) -> None:
    result = grade_from_measurement(code, {quantity: value})
    assert result.grade == grade
    assert result.score == score(code, grade)
    assert not result.verified
    assert result.unverified == (f"{STD} defects.{code}.grades.{grade} [{result.source}]",)


def test_band_is_lower_exclusive_upper_inclusive() -> None:
    band = Band("ovality_pct_of_d", 5.0, 15.0)
    assert [band.contains(v) for v in (5.0, 5.01, 15.0, 15.01)] == [False, True, True, False]
    assert Band("x", None, 5.0).contains(-1.0)
    assert Band("x", 25.0, None).contains(1e9)


def test_grade_from_measurement_reports_source_and_criterion() -> None:
    bx = grade_from_measurement("BX", {"ovality_pct_of_d": 7.0})
    assert (bx.grade, bx.score, bx.source, bx.verified) == (2, 2.0, "S", False)
    assert "5-15" in bx.criterion_en
    cj = grade_from_measurement("CJ", {"depth_pct_of_d": 35.0})
    assert (cj.grade, cj.score, cj.source) == (2, 2.0, "G")  # functional score is [G]


def test_grade_from_measurement_rejects_bad_input() -> None:
    with pytest.raises(BelowThresholdError, match="below the defect threshold 20"):
        grade_from_measurement("CJ", {"depth_pct_of_d": 19.9})
    with pytest.raises(BelowThresholdError):
        grade_from_measurement("JG", {"soft_area_loss_pct": 14.0})
    with pytest.raises(GradingError, match="graded by appearance"):
        grade_from_measurement("PL", {"ovality_pct_of_d": 3.0})
    with pytest.raises(GradingError, match="'ovality_pct_of_d'; got none"):
        grade_from_measurement("BX", {"gap_mm": 3.0})
    with pytest.raises(GradingError, match="more than one"):
        grade_from_measurement("JG", {"area_loss_pct": 10.0, "soft_area_loss_pct": 20.0})
    with pytest.raises(GradingError, match="not a measurement"):
        grade_from_measurement("BX", {"ovality_pct_of_d": float("nan")})
    with pytest.raises(GradingError, match="not a measurement"):
        grade_from_measurement("BX", {"ovality_pct_of_d": -1.0})


def test_measured_grades_agree_with_the_world_generator() -> None:
    # sim_worlds/worldgen/cjj181.py keeps its own copy of the bands for ground truth; a
    # difference would make the simulator's truth disagree with the reports.
    for code, rule in worldgen_rules.RULES.items():
        limits = [v for lim in rule.upper_limits for v in (lim - 0.01, lim, lim + 0.01)]
        values = [rule.minimum, *limits, 100.0]
        for value in values:
            expected = worldgen_rules.grade_for(code, {rule.quantity: value})
            assert grade_from_measurement(code, {rule.quantity: value}).grade == expected, (
                code,
                value,
            )


# ---------------------------------------------------------------- segment evaluation


def test_three_structural_defects_worked_by_hand() -> None:
    # Segment L = 50 m, DN 800, under an arterial road, in silt.
    #   A  PL grade 3, P = 5, point at 10.0 m   gap to B = 11.2 - 10.0 = 1.2 m   -> n2
    #   B  CK grade 2, P = 2, point at 11.2 m   gap to A = 1.2 m                 -> n2
    #   C  BX grade 2, P = 2, 20.0 .. 23.0 m    gap to B = 20.0 - 11.2 = 8.8 m   -> n1
    # sum P1 = 2, sum P2 = 5 + 2 = 7, n = 3
    # S    = (2 + 1.1 * 7) / 3 = 9.7 / 3 = 3.23333
    # Smax = 5, F = max(5, 3.2333) = 5 -> grade III (3 < F <= 6)
    # L_i: A, B points -> 1 m each [G]; C continuous -> 3 m
    # S_M  = (2*3 + 1.1*(5*1 + 2*1)) / (S * L) = (6 + 7.7) / (3.23333 * 50) = 13.7 / 161.6667
    #      = 0.084742 -> local defect (< 0.1)
    # K = 6 (trunk road), E = 3 (600 <= 800 <= 1000), T = 10 (silt)
    # RI = 0.7*5 + 0.1*6 + 0.05*3 + 0.15*10 = 3.5 + 0.6 + 0.15 + 1.5 = 5.75 -> III repair soon
    # MI = 0.8*0 + 0.15*6 + 0.05*3 = 0.9 + 0.15 = 1.05 -> II plan maintenance
    # Repair scope: RI > 4 and S_M < 0.1 -> local repair
    defects = [
        _point("PL", 3, 10.0),
        _point("CK", 2, 11.2),
        DefectRecord("BX", 2, 20.0, 23.0),
    ]
    ev = evaluate_segment(defects, 50.0, SiteFactors(dn_mm=800, area="trunk_road", soil="silt"))
    assert (ev.structural.n1, ev.structural.n2) == (1, 2)
    assert ev.structural.sum_p1 == pytest.approx(2.0)
    assert ev.structural.sum_p2 == pytest.approx(7.0)
    assert ev.S == pytest.approx(9.7 / 3)
    assert ev.S_max == 5.0
    assert ev.F == 5.0
    assert ev.S_M == pytest.approx(13.7 / (9.7 / 3 * 50))
    assert ev.S_M == pytest.approx(0.084742, abs=1e-6)
    assert ev.structural.grade.label == "III"
    assert ev.structural.grade.text_zh == "管段缺陷严重，结构状况受到影响"
    assert ev.structural.density_type is not None
    assert ev.structural.density_type.text_zh == "局部缺陷"
    assert [d.length_m for d in ev.structural.defects] == [1.0, 1.0, 3.0]
    assert [d.spacing_class for d in ev.structural.defects] == [
        SpacingClass.N2,
        SpacingClass.N2,
        SpacingClass.N1,
    ]
    assert (ev.K, ev.E, ev.T) == (6.0, 3.0, 10.0)
    assert ev.RI == pytest.approx(5.75)
    assert ev.repair.label == "III"
    assert ev.repair.text_zh == "尽快修复"
    assert ev.MI == pytest.approx(1.05)
    assert ev.maintenance.text_zh == "宜做养护计划"
    assert ev.repair_scope is RepairScope.LOCAL
    # No functional defects: Y = Ymax = G = Y_M = 0, grade I.
    assert (ev.Y, ev.Y_max, ev.G, ev.Y_M) == (0.0, 0.0, 0.0, 0.0)
    assert ev.functional.grade.label == "I"
    # The rows and rules used are flagged, [G] ones as such.
    for flag in (
        f"{STD} defects.PL.grades.3 [S]",
        f"{STD} segment.alpha [S]",
        f"{STD} segment.rules.defect_length [G]",
        f"{STD} segment.rules.spacing_to_nearest_same_kind [G]",
        f"{STD} segment.k_area.trunk_road [S]",
        f"{STD} segment.t_soil.silt [S]",
        f"{STD} segment.ri_weights [S]",
    ):
        assert flag in ev.unverified


def test_functional_defects_and_mi_worked_by_hand() -> None:
    # L = 40 m, DN 1600, commercial centre, ordinary soil.
    #   CJ grade 2, P = 2 [G], 0 .. 20 m (continuous, L_i = 20 m); gap to SG = 30 - 20 = 10 m
    #   SG grade 3, P = 5 [G], point at 30 m (L_i = 1 m)                          both n1
    # Y = (2 + 5) / 2 = 3.5; Ymax = 5; G = 5 -> grade III
    # Y_M = (2*20 + 5*1) / (3.5 * 40) = 45 / 140 = 0.32143 -> partial (0.1 .. 0.5)
    # K = 10, E = 10 (DN > 1500), T = 0
    # MI = 0.8*5 + 0.15*10 + 0.05*10 = 4 + 1.5 + 0.5 = 6.0 -> III maintain soon
    # RI = 0.7*0 + 0.1*10 + 0.05*10 + 0.15*0 = 1.5 -> II plan a repair; F = 0 <= 3 -> no repair
    defects = [DefectRecord("CJ", 2, 0.0, 20.0), _point("SG", 3, 30.0)]
    ev = evaluate_segment(defects, 40.0, SiteFactors(dn_mm=1600, area="commercial_centre"))
    assert (ev.functional.n1, ev.functional.n2) == (2, 0)
    assert ev.Y == pytest.approx(3.5)
    assert ev.Y_max == 5.0
    assert ev.G == 5.0
    assert ev.Y_M == pytest.approx(45 / 140)
    assert ev.functional.grade.label == "III"
    assert ev.functional.density_type is not None
    assert ev.functional.density_type.label == "partial"
    assert ev.MI == pytest.approx(6.0)
    assert ev.maintenance.text_zh == "尽快处理"
    assert ev.RI == pytest.approx(1.5)
    assert ev.repair.label == "II"
    assert ev.repair_scope is RepairScope.NONE
    assert ev.F == 0.0
    assert f"{STD} defects.CJ.grades.2 [G]" in ev.unverified
    assert f"{STD} segment.mi_weights [S]" in ev.unverified


def test_all_n2_mean_exceeds_max_and_spacing_limit_is_inclusive() -> None:
    # PL grade 2 (P = 2) at 0.1 m and 1.6 m: gap 1.5 m (as a float 1.5000000000000002) -> n2.
    # S = 1.1 * (2 + 2) / 2 = 2.2 > Smax = 2, so F = 2.2 -> grade II.
    ev = evaluate_segment([_point("PL", 2, 0.1), _point("PL", 2, 1.6)], 10.0, SiteFactors(300))
    assert (ev.structural.n1, ev.structural.n2) == (0, 2)
    assert ev.S == pytest.approx(2.2)
    assert ev.F == pytest.approx(2.2)
    assert ev.structural.grade.label == "II"
    # Gap 1.51 m -> both n1: S = (2 + 2) / 2 = 2 = F.
    ev = evaluate_segment([_point("PL", 2, 0.1), _point("PL", 2, 1.61)], 10.0, SiteFactors(300))
    assert (ev.structural.n1, ev.structural.n2) == (2, 0)
    assert ev.F == pytest.approx(2.0)


def test_defects_closer_than_one_metre_merge_by_default() -> None:
    # PL grade 2 (P = 2) at 5.0 m and SL grade 3 (P = 5) at 5.5 m: gap 0.5 m < 1.0 m -> one
    # defect [G]: P = 5 (the higher), extent 5.0 .. 5.5 m, counted as L_i = 1 m.
    # n = 1 (n1, no neighbour): S = 5, F = 5, S_M = 5*1 / (5 * 20) = 0.05 -> local.
    defects = [_point("PL", 2, 5.0), _point("SL", 3, 5.5)]
    ev = evaluate_segment(defects, 20.0, SiteFactors(dn_mm=300))
    assert ev.structural.n == 1
    (counted,) = ev.structural.defects
    assert (counted.code, counted.score, counted.start_m, counted.end_m) == ("SL", 5.0, 5.0, 5.5)
    assert counted.length_m == 1.0
    assert len(counted.records) == 2
    assert counted.spacing_m is None
    assert ev.S == 5.0
    assert ev.S_M == pytest.approx(0.05)
    assert f"{STD} segment.rules.close_spacing [G]" in ev.unverified


def test_merging_chains_and_uses_the_union_length() -> None:
    # TL grade 1 (P = 1) at 0.0, 0.8 and 1.6 m: each gap 0.8 m < 1 m -> one defect 0 .. 1.6 m,
    # L_i = 1.6 m (longer than 1 m, real length). S = 1, S_M = 1*1.6 / (1 * 8) = 0.2.
    defects = [_point("TL", 1, 0.0), _point("TL", 1, 0.8), _point("TL", 1, 1.6)]
    ev = evaluate_segment(defects, 8.0, SiteFactors(dn_mm=300))
    assert ev.structural.n == 1
    assert ev.structural.defects[0].length_m == pytest.approx(1.6)
    assert ev.S_M == pytest.approx(0.2)


def test_close_defects_as_n2_option() -> None:
    # Same two defects as above, but each counted in n2 (gap 0.5 m <= 1.5 m):
    # S = 1.1 * (2 + 5) / 2 = 3.85; Smax = 5; F = 5
    # S_M = 1.1 * (2*1 + 5*1) / (3.85 * 20) = 7.7 / 77 = 0.1 -> partial (0.1 belongs to it)
    defects = [_point("PL", 2, 5.0), _point("SL", 3, 5.5)]
    options = EvaluationOptions(close_spacing=CloseSpacing.AS_N2)
    ev = evaluate_segment(defects, 20.0, SiteFactors(dn_mm=300), options=options)
    assert (ev.structural.n1, ev.structural.n2) == (0, 2)
    assert ev.S == pytest.approx(3.85)
    assert ev.F == 5.0
    assert ev.S_M == pytest.approx(0.1)
    assert ev.structural.density_type is not None
    assert ev.structural.density_type.label == "partial"


def test_structural_and_functional_spacings_are_separate() -> None:
    # PL at 5.0 m and CJ at 5.5 m are of different kinds: no merge, each alone in its kind.
    ev = evaluate_segment(
        [_point("PL", 2, 5.0), _point("CJ", 2, 5.5)], 20.0, SiteFactors(dn_mm=300)
    )
    assert (ev.structural.n1, ev.functional.n1) == (1, 1)
    assert (ev.F, ev.G) == (2.0, 2.0)


def test_empty_segment() -> None:
    # No defects: S = Smax = F = S_M = 0 (no division by zero), grade I, no density type.
    # DN 300 -> E = 0; area "other" K = 0; soil general T = 0 -> RI = MI = 0.
    ev = evaluate_segment([], 25.0, SiteFactors(dn_mm=300))
    assert (ev.S, ev.S_max, ev.F, ev.S_M) == (0.0, 0.0, 0.0, 0.0)
    assert (ev.Y, ev.Y_max, ev.G, ev.Y_M) == (0.0, 0.0, 0.0, 0.0)
    assert ev.structural.grade.label == "I"
    assert ev.structural.density_type is None
    assert (ev.RI, ev.MI) == (0.0, 0.0)
    assert ev.repair.text_zh == "不修复"
    assert ev.repair_scope is RepairScope.NONE


def test_fz_does_not_enter_the_segment_figures() -> None:
    ev = evaluate_segment([_point("FZ", 3, 4.0)], 25.0, SiteFactors(dn_mm=300))
    assert ev.functional.n == 0
    assert ev.G == 0.0
    assert [r.code for r in ev.not_scored] == ["FZ"]
    assert f"{STD} defects.FZ.grades.3 [G]" in ev.unverified


def test_e_zero_when_f_below_4_option() -> None:
    # One TJ grade 2 (P = 3): F = 3. DN 1200 -> E = 6. K = T = 0.
    # Default: RI = 0.7*3 + 0.05*6 = 2.1 + 0.3 = 2.4. Option on (F < 4): RI = 2.1.
    # MI = 0.05*6 = 0.3 either way.
    defects = [_point("TJ", 2, 3.0)]
    plain = evaluate_segment(defects, 10.0, SiteFactors(dn_mm=1200))
    assert plain.RI == pytest.approx(2.4)
    assert plain.MI == pytest.approx(0.3)
    opt = EvaluationOptions(e_zero_when_f_below_4=True)
    ev = evaluate_segment(defects, 10.0, SiteFactors(dn_mm=1200), options=opt)
    assert (ev.E, ev.E_ri) == (6.0, 0.0)
    assert ev.RI == pytest.approx(2.1)
    assert ev.MI == pytest.approx(0.3)
    assert any("e_zero_when_f_below_4" in flag for flag in ev.unverified)


def test_t_zero_when_f_zero_option() -> None:
    # No defects, soil silt T = 10: RI = 0.15*10 = 1.5 (II) by default; with the option T = 0
    # because F = 0, so RI = 0 (I).
    plain = evaluate_segment([], 10.0, SiteFactors(dn_mm=300, soil="silt"))
    assert plain.RI == pytest.approx(1.5)
    assert plain.repair.label == "II"
    opt = EvaluationOptions(t_zero_when_f_zero=True)
    ev = evaluate_segment([], 10.0, SiteFactors(dn_mm=300, soil="silt"), options=opt)
    assert ev.RI == 0.0
    assert ev.repair.label == "I"


@pytest.mark.parametrize(
    ("dn_mm", "e"),
    [(300, 0.0), (599, 0.0), (600, 3.0), (1000, 3.0), (1000.5, 6.0), (1500, 6.0), (1501, 10.0)],
)
def test_pipe_importance_from_dn(dn_mm: float, e: float) -> None:
    ev = evaluate_segment([], 10.0, SiteFactors(dn_mm=dn_mm))
    assert ev.E == e
    assert ev.MI == pytest.approx(0.05 * e)


def test_repair_scope_whole_segment() -> None:
    # BX grade 4 (P = 10) over 0 .. 10 m of a 10 m segment: S = F = 10, S_M = 10*10/(10*10) = 1
    # RI = 0.7*10 = 7 -> III (<= 7), > 4 -> S_M >= 0.1 -> whole-segment repair; grade IV.
    ev = evaluate_segment([DefectRecord("BX", 4, 0.0, 10.0)], 10.0, SiteFactors(dn_mm=300))
    assert ev.S_M == pytest.approx(1.0)
    assert ev.structural.grade.label == "IV"
    assert ev.structural.density_type is not None
    assert ev.structural.density_type.label == "whole"
    assert ev.RI == pytest.approx(7.0)
    assert ev.repair.label == "III"
    assert ev.repair_scope is RepairScope.WHOLE_SEGMENT


def test_defect_length_is_capped_at_the_segment() -> None:
    # Point defect on a 0.5 m segment: L_i = min(max(0, 1), 0.5) = 0.5 -> S_M = P*0.5/(P*0.5) = 1.
    ev = evaluate_segment([_point("PL", 1, 0.2)], 0.5, SiteFactors(dn_mm=300))
    assert ev.S_M == pytest.approx(1.0)


def test_segment_input_errors() -> None:
    factors = SiteFactors(dn_mm=300)
    with pytest.raises(GradingError, match="segment length"):
        evaluate_segment([], 0.0, factors)
    with pytest.raises(GradingError, match="start_m <= end_m"):
        evaluate_segment([DefectRecord("PL", 1, 3.0, 2.0)], 10.0, factors)
    with pytest.raises(GradingError, match=r"segment length 10\.0"):
        evaluate_segment([_point("PL", 1, 10.5)], 10.0, factors)
    with pytest.raises(GradingError, match="has no grade 5"):
        evaluate_segment([_point("PL", 5, 1.0)], 10.0, factors)
    with pytest.raises(GradingError, match="unknown area 'downtown'"):
        evaluate_segment([], 10.0, SiteFactors(dn_mm=300, area="downtown"))
    with pytest.raises(GradingError, match="unknown soil"):
        evaluate_segment([], 10.0, SiteFactors(dn_mm=300, soil="granite"))
    with pytest.raises(GradingError, match="diameter"):
        evaluate_segment([], 10.0, SiteFactors(dn_mm=0))


# ---------------------------------------------------------------- loading data files


def _copy_table(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "local.yaml"
    shutil.copy(DEFAULT_STANDARD_FILE, path)
    return path, path.read_text(encoding="utf-8")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("standard:\n  id: X\ndefects: [unclosed\n", encoding="utf-8")
    with pytest.raises(GradingTableError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_standard(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(GradingTableError, match=r"empty\.yaml: the file is empty"):
        load_standard(empty)
    with pytest.raises(GradingTableError, match=r"absent\.yaml: cannot read"):
        load_standard(tmp_path / "absent.yaml")


def test_missing_score_names_file_line_and_key(tmp_path: Path) -> None:
    path, text = _copy_table(tmp_path)
    row = 'criterion_en: "open gap, shape intact", score: 2, '
    assert row in text
    path.write_text(text.replace(row, 'criterion_en: "open gap, shape intact", '), "utf-8")
    line = _line_of(text, row)
    with pytest.raises(
        GradingTableError, match=rf"local\.yaml:{line}: defects\.PL\.grades\[1\]: missing 'score'"
    ):
        load_standard(path)


def test_bands_with_a_gap_are_rejected(tmp_path: Path) -> None:
    path, text = _copy_table(tmp_path)
    path.write_text(text.replace("ovality_pct_of_d: [5, 15]", "ovality_pct_of_d: [6, 15]"), "utf-8")
    with pytest.raises(GradingTableError, match=r"local\.yaml:\d+: defects\.BX\.grades: .*join"):
        load_standard(path)


def test_unquoted_comma_and_duplicate_key_are_rejected(tmp_path: Path) -> None:
    path, text = _copy_table(tmp_path)
    # An unquoted comma in a flow mapping splits the text into a stray key.
    path.write_text(text.replace('"open gap, shape intact"', "open gap, shape intact"), "utf-8")
    with pytest.raises(GradingTableError, match=r"unknown key.*'shape intact'"):
        load_standard(path)
    dup = text.replace("  BX:\n", "  PL:\n", 1)
    path.write_text(dup, "utf-8")
    # reported at the duplicate's own line (where BX was), not at the first PL
    line = _line_of(text, "  BX:")
    with pytest.raises(GradingTableError, match=rf"local\.yaml:{line}: duplicate key 'PL'"):
        load_standard(path)


def test_unverified_flag_is_required(tmp_path: Path) -> None:
    path, text = _copy_table(tmp_path)
    path.write_text(
        text.replace(
            "alpha: {value: 1.1, verified: false, source: S}", "alpha: {value: 1.1, source: S}"
        ),
        "utf-8",
    )
    with pytest.raises(GradingTableError, match=r"segment\.alpha: missing 'verified'"):
        load_standard(path)


def test_a_replacement_table_changes_scores_and_flags(tmp_path: Path) -> None:
    # A local table scoring PL grade 2 as 3 points (as one CN repo's test does), verified.
    path, text = _copy_table(tmp_path)
    old = 'score: 2, verified: false, source: S}\n      - {grade: 3, criterion_zh: "破碎"'
    assert old in text
    new = (
        'score: 3, verified: true, source: "local table"}\n      - {grade: 3, criterion_zh: "破碎"'
    )
    text = text.replace(old, new).replace("id: CJJ 181-2012", "id: LOCAL-1")
    path.write_text(text, "utf-8")
    local = load_standard(path)
    assert local.score("PL", 2) == 3.0
    assert score("PL", 2) == 2.0  # the default standard is untouched
    ev = evaluate_segment([_point("PL", 2, 1.0)], 10.0, SiteFactors(dn_mm=300), standard=local)
    assert ev.F == 3.0
    assert ev.standard_id == "LOCAL-1"
    assert not any("defects.PL" in flag for flag in ev.unverified)
    assert "LOCAL-1 segment.rules.defect_length [G]" in ev.unverified


# ---------------------------------------------------------------- mapping


def test_mapping_lookups() -> None:
    assert to_pacp("BX") == ("DR", "DF*")
    assert to_en13508("BX") == ("BAA",)
    assert to_en13508("CK") == to_en13508("TJ") == ("BAJ",)
    assert to_en13508("PL") == ("BAB", "BAC")
    assert to_pacp("QF") == ()  # no counterpart proposed
    assert default_mapping().row("SG").source == "G"


def test_malformed_mapping_names_file(tmp_path: Path) -> None:
    path = tmp_path / "map.yaml"
    text = DEFAULT_MAPPING_FILE.read_text(encoding="utf-8")
    path.write_text(text.replace("BX: {pacp: [DR, DF*], ", "BX: {pacp: DR, "), "utf-8")
    with pytest.raises(
        GradingTableError, match=rf"map\.yaml:{_line_of(text, 'BX:')}: mapping\.BX\.pacp"
    ):
        load_mapping(path)


def test_error_types_are_grading_errors() -> None:
    for err in (GradingTableError, UnknownCodeError, BelowThresholdError, NotScoredError):
        assert issubclass(err, GradingError)
    assert re.search("CJJ", default_standard().id)
