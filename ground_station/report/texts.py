"""Fixed bilingual texts of the report (the shipped font subset covers every character here)."""

from __future__ import annotations

TITLE = ("排水管道检测与评估报告", "Sewer inspection and evaluation report")
SEGMENT_TABLE = ("管段状况评估表", "Segment condition assessment (CJJ 181-2012)")
DEFECT_RECORD = ("病害记录表（代码按 CJJ 181-2012；积水 JS 仅记录，不评分）",
                 "Defect record (codes per CJJ 181-2012; 积水 JS standing water recorded, "
                 "not scored)")
# per asset kind (navigation/mission/plan.py); a kind not listed here reads as a pipe
TITLES = {
    "pipe": TITLE,
    "tunnel": ("综合管廊巡检报告", "Utility tunnel inspection report"),
    "shelter": ("人防工程巡检报告", "Civil-defence shelter inspection report"),
}
FINDINGS_TABLES = {"pipe": SEGMENT_TABLE, "tunnel": DEFECT_RECORD, "shelter": DEFECT_RECORD}

INFO = {
    "segment_id": ("管段编号", "Segment"),
    "from_to": ("起止井号", "Manholes (from - to)"),
    "dn_mm": ("管径 (mm)", "Diameter DN (mm)"),
    "material": ("管材", "Material"),
    "length_m": ("管段长度 (m)", "Segment length (m)"),
    "depth_m": ("埋深 (m)", "Invert depth (m)"),
    "section_id": ("区段编号", "Section"),
    "gallery": ("舱室", "Gallery"),
    "chainage": ("起止里程 (m)", "Chainage from - to (m)"),
    "clear_section": ("断面 (m)", "Clear section width x height (m)"),
    "shelter_name": ("工程名称", "Shelter"),
    "shelter_level": ("楼层", "Level"),
    "direction": ("检测方向", "Direction"),
    "mission": ("任务名称", "Mission"),
    "state": ("任务状态", "Mission state"),
    "started": ("开始时间 (UTC)", "Started (UTC)"),
    "ended": ("结束时间 (UTC)", "Ended (UTC)"),
    "last_update": ("最后更新 (UTC)", "Last update (UTC)"),
    "progress": ("已检测 / 剩余 (m)", "Inspected / left (m)"),
    "site": ("场地", "Site"),
    "detector": ("检测模型", "Detector"),
    "standard": ("评估标准", "Standard"),
    "generated": ("报告生成时间 (UTC)", "Report generated (UTC)"),
}

STATES = {
    "running": ("进行中", "running"),
    "completed": ("已完成", "completed"),
    "interrupted": ("已中断", "interrupted"),
    "aborted": ("已中止", "aborted"),
}

BANNERS = {
    "interrupted": ("任务中断：本报告只包含中断前记录的结果。",
                    "Mission interrupted: this report holds only what was recorded before "
                    "the interruption."),
    "aborted": ("任务中止：本报告只包含中止前记录的结果。",
                "Mission aborted: this report holds only what was recorded before the abort."),
    "running": ("任务仍在进行：结果为临时结果。",
                "Mission still running: every figure is provisional."),
}
REASON = ("原因", "Reason")
WRITER_LOST = ("记录程序已停止更新", "the mission folder still says 'running' but its writer "
               "stopped updating it")
COMPUTED = ("管段评估由报告根据已记录的缺陷计算。",
            "Segment evaluation computed by the report from the findings recorded so far.")

COLUMNS = (
    ("序号", "No."),
    ("距离 (m)", "Distance (m)"),
    ("时钟", "Clock"),
    ("代码", "Code"),
    ("名称", "Name"),
    ("等级", "Grade"),
    ("分值", "Score"),
    ("长度 (m)", "Length (m)"),
    ("照片", "Photo"),
    ("判定依据", "Basis"),
)
NO_PHOTO = ("无照片", "no photo")
ALL_LEVELS = ("全部", "all levels")
NO_FINDINGS = ("未发现缺陷", "No defects recorded")
NOT_COUNTED = ("不计入评估", "not counted")

STRUCTURAL = ("结构性缺陷", "Structural defects")
FUNCTIONAL = ("功能性缺陷", "Functional defects")
FIGURE_NAMES = {
    "S": ("平均值 S", "mean score S"),
    "S_max": ("最大值 Smax", "max score Smax"),
    "F": ("结构性缺陷参数 F", "structural index F"),
    "S_M": ("缺陷密度 S_M", "defect density S_M"),
    "Y": ("平均值 Y", "mean score Y"),
    "Y_max": ("最大值 Ymax", "max score Ymax"),
    "G": ("功能性缺陷参数 G", "functional index G"),
    "Y_M": ("缺陷密度 Y_M", "defect density Y_M"),
    "K": ("地区重要性参数 K", "area factor K"),
    "E": ("管道重要性参数 E", "pipe importance E"),
    "T": ("土质影响参数 T", "soil factor T"),
    "RI": ("修复指数 RI", "repair index RI"),
    "MI": ("养护指数 MI", "maintenance index MI"),
}
GRADE = ("等级", "grade")
DENSITY_TYPE = ("缺陷类型", "density type")
REPAIR = ("修复建议", "Repair recommendation")
MAINTENANCE = ("养护建议", "Maintenance recommendation")
REPAIR_SCOPE = {
    "none": ("无需修复", "no repair"),
    "local": ("局部修复", "local repair"),
    "whole_segment": ("整体修复", "whole-segment repair"),
}
SCOPE = ("修复范围", "Repair scope")
NOT_SCORED = ("不参与计算", "recorded, not scored")

MAP = ("缺陷分布图", "Defect map")
MAP_NOTE = ("管道展开图：横轴为距离 (m)，纵轴为时钟位置；颜色表示等级。",
            "Unrolled pipe: distance along the pipe (m) across, clock position down; colour by "
            "grade.")
_SECTION_CLOCK = ("纵轴为断面上的时钟位置（3 点：右侧墙，6 点：底板，12 点：顶板）；颜色表示等级。",
                  "clock position around the section down (3 h: right wall, 6 h: floor, "
                  "12 h: ceiling); colour by grade.")
MAP_NOTES = {
    "pipe": MAP_NOTE,
    "tunnel": ("管廊展开图：横轴为沿舱室里程 (m)，" + _SECTION_CLOCK[0],
               "Unrolled gallery: distance along the gallery (m) across, " + _SECTION_CLOCK[1]),
    "shelter": ("路线展开图：横轴为沿路线距离 (m)，" + _SECTION_CLOCK[0],
                "Unrolled route: distance along the route (m) across, " + _SECTION_CLOCK[1]),
}
TRAJECTORY = ("轨迹俯视图", "Trajectory (top view, site frame)")
NO_TRAJECTORY = ("无轨迹数据", "no trajectory recorded")
LEGEND_GRADE = ("等级", "Grade")
UNGRADED = ("未分级", "ungraded")
START, END = ("起点", "start"), ("终点", "end")

UNVERIFIED = ("待核实的评估规则", "Unverified table rows and rules")
UNVERIFIED_NOTICE = ("以下评分表行与规则尚未与标准原文核对，所有等级与指数仅供参考。",
                     "The rows and rules below have not been checked against the text of the "
                     "standard: every grade and index above is provisional.")
GUESSED = ("推测", "guessed")

EQUIVALENTS = ("其他标准对照", "Equivalent codes: NASSCO PACP and EN 13508-2")
EQUIVALENTS_NOTE = ("对照关系为建议值，未核实；PACP 等级不由 CJJ 等级推导。",
                    "The mapping is a proposal, not verified; PACP grades are not derived from "
                    "CJJ grades.")
# Codes the perception records that are not CJJ 181-2012 codes (the grading tables name those)
OBSERVATION_CODES = {
    "JS": ("积水", "standing water"),
}
OBSERVATION_NOTE = "not a CJJ 181-2012 code: recorded, not scored"
EQUIVALENT_COLUMNS = (("代码", "CJJ code"), ("名称", "Name"), ("PACP", "PACP"),
                      ("EN 13508-2", "EN 13508-2"), ("备注", "Note"))

PHOTOS = ("照片记录", "Photos taken")
NOTES = ("说明", "Notes")
PAGE = ("页", "page")
