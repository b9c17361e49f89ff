"""The ``crawler`` command: one entry point for crews, developers and CI.

Every subcommand turns a library error into one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler import __version__
from crawler.errors import CrawlerError
from perception.errors import PerceptionError

_LOG = logging.getLogger("crawler")

EXIT_FAILURE = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error and exit status 2."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _ros_defaults() -> None:
    # Keep DDS discovery on this machine unless the user chose otherwise (a robot talking to
    # a laptop sets ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET).
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def _stop_on_signal() -> threading.Event:
    """An event that SIGINT or SIGTERM sets from now on (install before making anything
    that must be cleaned up: a signal in between would kill the process and leave it)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


# --- subcommands ------------------------------------------------------------------------------


def cmd_emulator(args: argparse.Namespace) -> int:
    """Serve the MCU emulator on a pty until interrupted."""
    from firmware_bridge.emulator import McuModel, PtyEmulator

    stop = _stop_on_signal()
    with PtyEmulator(Path(args.link), McuModel(seed=args.seed)) as emulator:
        print(f"MCU emulator on {args.link} -> {os.path.realpath(args.link)}", flush=True)
        while not stop.wait(0.5):
            pass
        model = emulator.model
        print(f"stopped after {emulator.commands_received} commands; "
              f"tracks at {model.track_pos_m[0]:.2f} / {model.track_pos_m[1]:.2f} m")
    return 0


def cmd_driver(args: argparse.Namespace) -> int:
    """Run the crawler_driver node."""
    _ros_defaults()
    from crawler.config import BridgeConfig, load_config
    from crawler_driver.driver_node import run

    config = load_config(Path(args.config) if args.config else None)
    if args.port:
        bridge = BridgeConfig.model_validate(config.bridge.model_dump() | {"port": args.port})
        config = config.model_copy(update={"bridge": bridge})
    run(config, args=["crawler_driver", *args.ros_args])
    return 0


BENCHMARKS: dict[str, str] = {"firmware": "benchmarks.firmware", "sim": "benchmarks.sim",
                              "nav": "benchmarks.nav", "perception": "benchmarks.perception",
                              "detect": "benchmarks.detect", "mission": "benchmarks.mission"}
"""Benchmark name -> module with ``run(quick, progress) -> dict``."""


def cmd_bench(args: argparse.Namespace) -> int:
    """Run a benchmark; with --json its last stdout line is one JSON object."""
    import importlib

    module = importlib.import_module(BENCHMARKS[args.name])
    def progress(line: str) -> None:
        return (print(f"[bench {args.name}] {line}", file=sys.stderr, flush=True))
    result: dict[str, Any]
    if args.name == "detect":  # one detector on one dataset, for researchers comparing models
        if not args.detector or not args.data:
            raise CrawlerError("bench detect needs --detector SPEC and --data DATA.yaml")
        result = module.run_detect_bench(args.detector, Path(args.data), split=args.split,
                                         progress=progress)
    else:
        result = module.run(quick=args.quick, progress=progress)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


DEMO_PLAN = (Path(__file__).resolve().parents[1] / "navigation" / "mission" / "examples"
             / "sewer_dn1000.yaml")


def cmd_demo(args: argparse.Namespace) -> int:
    """A whole simulated inspection mission in the sewer, to its report (or, with --drive, a
    plain drive; with --bridge, just the emulated MCU)."""
    _ros_defaults()
    if args.bridge:
        from crawler.demo import run_bridge_demo

        status: int = run_bridge_demo(duration_scale=args.speedup)
        return status
    if args.drive:
        return _drive_demo(Path(args.out))
    # A folder per run: a mission folder is never overwritten
    out = Path(args.out) / f"mission_{datetime.now(UTC):%Y%m%d_%H%M%S}"
    print("crawler demo: an autonomous inspection of the 120 m DN1000 sewer (sewer_dn1000), "
          "manhole A to B and back", flush=True)
    print(f"  plan {DEMO_PLAN.name}: 0.15 m/s, photos, a close-up at each new finding, "
          "gas/battery/tether safety; simulator, fused localization, the shipped detector, "
          "CJJ 181 grading; about 6 minutes on two cores", flush=True)
    status = _run_mission_and_report(str(DEMO_PLAN), out, None)
    _print_findings_table(out)
    return status


def _drive_demo(out: Path) -> int:
    from crawler.sim_run import SimOptions, run_sim

    print("crawler demo: the crawler drives the 120 m DN1000 sewer (sewer_dn1000) from manhole "
          "A to manhole B", flush=True)
    print("  simulator + real crawler_driver over a pty, lidar and camera on; outputs in "
          f"{out}/", flush=True)
    summary = run_sim(SimOptions(world="sewer_dn1000", speed_mps=0.5, out=out, seed=7,
                                 frame_every_m=20.0))
    print(f"crawler demo: drove {summary['route_distance_m']} of {summary['route_length_m']} m "
          f"in {summary['sim_time_s']} s simulated ({summary['wall_time_s']} s wall, "
          f"x{summary['real_time_factor']} real time); tether {summary['tether_m']} m")
    print(f"  what the camera saw at each defect: {out / str(summary['contact_sheet'])}")
    print(f"  lidar map (top view, wall slice):   {out / str(summary['lidar_map'])}")
    print(f"  all frames: {out / 'frames'}/   trajectory: {out / 'trajectory_truth.tum'}")
    return 0


def _run_mission_and_report(plan: str, out: Path, world: str | None) -> int:
    """Run a plan in the simulator with a live progress line, then write its report."""
    from crawler.mission_run import MissionRunError, result_summary, run_simulated_mission
    from ground_station.report import ReportError, build_report
    from navigation.mission import MissionError

    try:
        result = run_simulated_mission(
            plan, out, world=world,
            progress=lambda p: print("\r" + p.line(), end="", file=sys.stderr, flush=True))
    except (MissionError, MissionRunError) as err:
        raise CrawlerError(str(err)) from err
    print(file=sys.stderr)
    summary = result_summary(result)
    print(json.dumps(summary, indent=2, default=str))
    try:
        files = build_report(out)
    except ReportError as err:  # the mission folder is complete; only the report failed
        print(f"crawler: the report could not be written: {err}; the mission folder {out} is "
              f"complete (retry: crawler mission report {out})", file=sys.stderr)
        return EXIT_FAILURE
    print(f"mission {files.state}: {files.findings} rows in the findings table; folder {out}")
    print(f"  report: {files.html}\n  pdf:    {files.pdf}\n  gis:    {files.geojson}")
    return 0 if summary.get("state") == "completed" else EXIT_FAILURE


def _print_findings_table(folder: Path) -> None:
    """The segment's findings as the report's table shows them (管段状况评估表)."""
    from ground_station.report.folder import read_findings

    findings = [f for f in read_findings(folder).findings if f.status == "confirmed"]
    print(f"\n{'No':>3} {'code':<4} {'from m':>7} {'to m':>7} {'clock':>5} {'grade':>5} "
          f"{'score':>5}  basis")
    for number, f in enumerate(findings, 1):
        clock = "" if f.clock_h is None else f"{f.clock_h:.1f}"
        grade = "" if f.grade is None else str(f.grade)
        score = "" if f.score is None else f"{f.score:g}"
        print(f"{number:>3} {f.code:<4} {f.start_m:7.2f} {f.end_m:7.2f} {clock:>5} {grade:>5} "
              f"{score:>5}  {f.grade_basis or ''}")


def cmd_sim(args: argparse.Namespace) -> int:
    """Run a simulated world with the real driver node."""
    _ros_defaults()
    from crawler.sim_run import SimOptions, run_sim

    if args.drive == "teleop" and not sys.stdin.isatty():
        raise CrawlerError("keyboard teleop needs a terminal: run `crawler sim WORLD --drive "
                           "none` and publish /cmd_vel, or use --drive route")
    if args.drive == "teleop" and args.rtf == 0.0:
        args.rtf = 1.0  # a person drives in real time
    options = SimOptions(world=args.world, drive=args.drive, speed_mps=args.speed,
                         rtf=args.rtf, duration_s=args.duration,
                         out=Path(args.out) if args.out else None, camera=not args.no_camera,
                         lidar=not args.no_lidar, seed=args.seed,
                         planar_scan_samples=args.scan_2d, localize=args.localize)
    print(f"crawler sim: {args.world}, driving: {args.drive}", flush=True)
    summary = run_sim(options)
    if summary:
        print(f"crawler sim: {summary['route_distance_m']} m of {summary['route_length_m']} m "
              f"in {summary['sim_time_s']} s simulated, {summary['wall_time_s']} s wall "
              f"(x{summary['real_time_factor']}); outputs in {args.out}")
    return 0


def cmd_slam_run(args: argparse.Namespace) -> int:
    """Offline lidar SLAM on a bag."""
    from navigation.bag_io import BagError
    from navigation.offline import run_offline_slam
    from navigation.site import SiteFileError, load_site

    try:
        site = load_site(Path(args.site)) if args.site else None
        result = run_offline_slam(Path(args.bag), Path(args.out), site,
                                  progress=lambda line: print(f"  {line}", flush=True))
    except (BagError, SiteFileError) as err:
        raise CrawlerError(str(err).splitlines()[0]) from err
    print(f"crawler slam: {result.scans} scans, {result.distance_m:.1f} m; wrote "
          + ", ".join(str(p) for p in result.files)
          + (f" ({result.skipped_messages} unreadable messages skipped)"
             if result.skipped_messages else ""))
    return 0


def cmd_slam_info(args: argparse.Namespace) -> int:
    """What a bag holds."""
    from navigation.bag_io import BagError, bag_summary

    try:
        print(bag_summary(Path(args.bag)).format())
    except BagError as err:
        raise CrawlerError(str(err).splitlines()[0]) from err
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Drive a simulated world and record a bag."""
    from sim_worlds.simulator.errors import SimError
    from sim_worlds.simulator.recording import record_drive

    try:
        summary = record_drive(args.world, Path(args.bag), duration_s=args.duration,
                               speed_mps=args.speed, planar_scan_samples=args.scan_2d,
                               seed=args.seed, lidar_3d=not args.no_3d,
                               cloud_voxel_m=args.cloud_voxel,
                               progress=lambda line: print(f"  {line}", flush=True))
    except (SimError, ValueError) as err:
        raise CrawlerError(str(err).splitlines()[0]) from err
    print(f"crawler record: {summary.bag_path} ({summary.bag_bytes / 1e6:.1f} MB, "
          f"{summary.sim_s:.0f} s simulated, {summary.true_distance_m:.1f} m driven)")
    return 0


# --- parser -----------------------------------------------------------------------------------


def cmd_perception(args: argparse.Namespace) -> int:
    """Run the defect_detector or defect_mapper node."""
    _ros_defaults()
    from crawler.config import load_config

    config = load_config(Path(args.config) if args.config else None)
    if args.detector:
        perception = config.perception.model_copy(update={"detector": args.detector})
        config = config.model_copy(update={"perception": perception})
    if args.node == "detector":
        from crawler_perception.detector_node import run as run_detector

        run_detector(config, args=["defect_detector", *args.ros_args])
    else:
        from crawler_perception.mapper_node import run as run_mapper

        run_mapper(config, args=["defect_mapper", *args.ros_args])
    return 0


def cmd_mission_run(args: argparse.Namespace) -> int:
    """Run a mission plan in the simulator, writing the mission folder as it goes, then its
    report."""
    out = Path(args.out) if args.out else Path("out/missions") / Path(args.plan).stem
    return _run_mission_and_report(args.plan, out, args.world)


def cmd_mission_node(args: argparse.Namespace) -> int:
    """Run the mission_executor ROS 2 node on the robot (waits for /mission/start)."""
    _ros_defaults()
    from crawler.errors import ConfigError
    from crawler_navigation.mission_executor_node import run as run_executor
    from navigation.mission import MissionError

    ros_args = ["--ros-args", "-p", f"auto_start:={'true' if args.start else 'false'}"]
    try:
        run_executor(args.plan, args=ros_args)
    except (MissionError, ConfigError) as err:
        raise CrawlerError(str(err)) from err
    return 0


def cmd_mission_report(args: argparse.Namespace) -> int:
    """Rebuild report.html, report.pdf and defects.geojson from a mission folder."""
    from ground_station.report import ReportError, build_report

    try:
        files = build_report(Path(args.folder))
    except ReportError as err:
        raise CrawlerError(str(err)) from err
    print(f"mission {files.state}: {files.findings} rows in the findings table")
    print(f"  report: {files.html}\n  pdf:    {files.pdf}\n  gis:    {files.geojson}")
    return 0


def cmd_dataset_render(args: argparse.Namespace) -> int:
    """Render a labelled YOLO dataset from a simulated world."""
    from dataclasses import replace

    from perception.synthetic.render import default_settings, write_dataset

    looks = {"train": args.train_looks, "val": args.val_looks, "test": args.test_looks}
    looks = {split: count for split, count in looks.items() if count > 0}
    last = {"percent": -1}

    def progress(split: str, done: int, total: int) -> None:
        percent = 100 * done // total
        if percent != last["percent"] and percent % 10 == 0:
            last["percent"] = percent
            print(f"[dataset] {split}: {done}/{total} images", file=sys.stderr, flush=True)

    settings = replace(default_settings(args.world), frames_per_look=args.frames_per_look,
                       distractors=not args.no_distractors, class_weights=_weights(args.focus),
                       world_look=args.world_look, close_up_fraction=args.close_ups)
    if not 0.0 <= args.close_ups <= 1.0:
        raise CrawlerError(f"--close-ups {args.close_ups}: a fraction of frames, 0 to 1")
    if args.no_hold_out:
        settings = replace(settings, exclude_route_m=None)
    elif args.hold_out:
        settings = replace(settings, exclude_route_m=(args.hold_out[0], args.hold_out[1]))
    data_yaml = write_dataset(Path(args.out), looks, world=args.world, settings=settings,
                              progress=progress, first_look=args.first_look)
    print(f"dataset written: {data_yaml}")
    return 0


def _weights(items: list[str]) -> tuple[tuple[str, float], ...]:
    weights = []
    for item in items:
        code, sep, value = item.partition("=")
        try:
            weights.append((code, float(value)))
        except ValueError as err:
            raise CrawlerError(f"--focus '{item}' must be CODE=WEIGHT, e.g. PL=3") from err
        if not sep or float(value) <= 0.0:
            raise CrawlerError(f"--focus '{item}' must be CODE=WEIGHT with WEIGHT > 0")
    return tuple(weights)


def cmd_dataset_import(args: argparse.Namespace) -> int:
    """Import a real YOLO-format dataset, renaming its classes to CJJ 181 codes."""
    from perception.yolo_dataset import import_dataset

    class_map: dict[str, str] = {}
    for item in args.map:
        source, sep, code = item.partition("=")
        if not sep or not source or not code:
            raise CrawlerError(f"--map '{item}' must be SOURCE_NAME=CJJ_CODE")
        class_map[source] = code
    report = import_dataset(Path(args.data), Path(args.out), class_map)
    print(f"dataset imported into {args.out}: {report}")
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    """Train a detector from a model .yaml on a YOLO dataset; export ONNX."""
    from perception.training import DEFAULT_MODEL_YAML, TrainSettings, train_detector

    settings = TrainSettings(epochs=args.epochs, image_size_px=args.imgsz,
                             export_size_px=args.export_imgsz, batch=args.batch, seed=args.seed,
                             close_mosaic=args.close_mosaic)
    command = "crawler " + " ".join(sys.argv[1:])
    result = train_detector(Path(args.data), Path(args.out), settings,
                            Path(args.model) if args.model else DEFAULT_MODEL_YAML,
                            command=command, log=print,
                            init_weights=Path(args.weights) if args.weights else None)
    print(f"weights: {result.weights_pt}\nonnx:    {result.model_onnx}\n"
          f"card:    {result.model_card}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``crawler`` command."""
    parser = _Parser(prog="crawler", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"crawler {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    emulator = sub.add_parser("emulator", help="serve the MCU emulator on a pseudo-terminal")
    emulator.add_argument("--link", default="/tmp/crawler_mcu",
                          help="stable path of the pty (a symlink; default %(default)s)")
    emulator.add_argument("--seed", type=int, default=0, help="noise seed")
    emulator.set_defaults(func=cmd_emulator)

    driver = sub.add_parser("driver", help="run the crawler_driver ROS 2 node")
    driver.add_argument("--port", help="pyserial URL of the MCU (overrides bridge.port)")
    driver.add_argument("--config", help="configuration YAML (see docs/configuration.md)")
    driver.set_defaults(func=cmd_driver)

    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument("name", choices=sorted(BENCHMARKS))
    bench.add_argument("--json", action="store_true", help="one JSON object on the last line")
    bench.add_argument("--quick", action="store_true", help="fewer samples (for smoke tests)")
    bench.add_argument("--detector", metavar="SPEC", help="detect: onnx:PATH, ultralytics:PATH, "
                       "classical, python:module:Class, shipped")
    bench.add_argument("--data", metavar="DATA.yaml", help="detect: a YOLO dataset's data.yaml")
    bench.add_argument("--split", default="test", help="detect: split to score (default test)")
    bench.set_defaults(func=cmd_bench)

    sim = sub.add_parser("sim", help="run a simulated world with the real driver node")
    sim.add_argument("world", help="world name (sewer_dn1000, utility_tunnel, "
                     "civil_defence_shelter) or an .sdf path")
    sim.add_argument("--drive", choices=("route", "none", "teleop"), default="route",
                     help="route: follow the world's route; teleop: keyboard (w/a/s/d, space, "
                     "q); none: listen to /cmd_vel")
    sim.add_argument("--speed", type=float, default=0.3, help="route speed, m/s")
    sim.add_argument("--rtf", type=float, default=0.0,
                     help="target real-time factor (0: as fast as possible)")
    sim.add_argument("--duration", type=float, help="stop after this many simulated seconds")
    sim.add_argument("--out", help="folder for frames, lidar map, trajectory, summary")
    sim.add_argument("--no-camera", action="store_true")
    sim.add_argument("--no-lidar", action="store_true")
    sim.add_argument("--scan-2d", type=int, default=0, metavar="N",
                     help="also publish /scan: a 2D 360-degree scan of N samples")
    sim.add_argument("--localize", action="store_true",
                     help="also run the slam and localizer nodes (site file from the world)")
    sim.add_argument("--seed", type=int, default=0)
    sim.set_defaults(func=cmd_sim)

    slam = sub.add_parser("slam", help="offline lidar SLAM on recorded bags")
    slam_sub = slam.add_subparsers(dest="slam_command", required=True, metavar="COMMAND",
                                   parser_class=_Parser)
    slam_run = slam_sub.add_parser("run", help="SLAM over a ROS 2 bag (MCAP or sqlite3)")
    slam_run.add_argument("bag", help="bag folder, .mcap or .db3 file")
    slam_run.add_argument("--out", required=True, help="output folder")
    slam_run.add_argument("--site", help="site file (docs/site_file.md): site frame, fixes")
    slam_run.set_defaults(func=cmd_slam_run)
    slam_info = slam_sub.add_parser("info", help="topics, types, counts and duration of a bag")
    slam_info.add_argument("bag")
    slam_info.set_defaults(func=cmd_slam_info)

    record = sub.add_parser("record", help="drive a simulated world and record a ROS 2 bag")
    record.add_argument("world")
    record.add_argument("bag", help="output: a .mcap file or a bag folder")
    record.add_argument("--duration", type=float, help="simulated seconds (default: the route)")
    record.add_argument("--speed", type=float, default=0.5)
    record.add_argument("--scan-2d", type=int, default=720, metavar="N",
                        help="2D scan samples (0: none)")
    record.add_argument("--no-3d", action="store_true", help="leave the 3D lidar out")
    record.add_argument("--cloud-voxel", type=float, help="thin 3D clouds to this voxel (m)")
    record.add_argument("--seed", type=int, default=0)
    record.set_defaults(func=cmd_record)

    mission = sub.add_parser("mission", help="inspection missions: run, node, report")
    mission_sub = mission.add_subparsers(dest="mission_command", required=True,
                                         metavar="COMMAND", parser_class=_Parser)
    run_plan = mission_sub.add_parser("run", help="run a mission plan (simulated world)")
    run_plan.add_argument("plan", help="mission plan YAML (docs/mission_plan.md)")
    run_plan.add_argument("--out", help="mission folder (default out/missions/PLAN_NAME)")
    run_plan.add_argument("--world", help="simulated world (default: the plan's world: site)")
    run_plan.set_defaults(func=cmd_mission_run)
    node = mission_sub.add_parser("node", help="run the mission_executor ROS 2 node (robot)")
    node.add_argument("plan", help="mission plan YAML")
    node.add_argument("--start", action="store_true",
                      help="start at once (default: wait for the /mission/start service)")
    node.set_defaults(func=cmd_mission_node)
    report = mission_sub.add_parser("report", help="rebuild the reports of a mission folder")
    report.add_argument("folder", help="mission folder (mission.yaml, findings.sqlite, ...)")
    report.set_defaults(func=cmd_mission_report)

    perception = sub.add_parser("perception", help="run a perception node (ROS 2)")
    perception.add_argument("node", choices=("detector", "mapper"),
                            help="detector: /camera/image_raw -> /defects/detections; mapper: "
                            "detections + /localization/pose + /points -> /defects/findings")
    perception.add_argument("--config", help="configuration YAML (see docs/configuration.md)")
    perception.add_argument("--detector", metavar="SPEC",
                            help="overrides perception.detector (onnx:PATH, classical, ...)")
    perception.set_defaults(func=cmd_perception)

    dataset = sub.add_parser("dataset", help="labelled images for training detectors")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True,
                                         metavar="COMMAND", parser_class=_Parser)
    render = dataset_sub.add_parser("render", help="render a YOLO dataset in a simulated world")
    render.add_argument("out", help="output folder (data.yaml, images/, labels/)")
    render.add_argument("--world", default="sewer_dn1000")
    render.add_argument("--train-looks", type=int, default=30,
                        help="randomised looks (texture/lamp seeds) for training")
    render.add_argument("--val-looks", type=int, default=4)
    render.add_argument("--test-looks", type=int, default=8,
                        help="looks for the held-out test split (seeds never used in training)")
    render.add_argument("--frames-per-look", type=int, default=50)
    render.add_argument("--first-look", type=int, default=0,
                        help="offset into each split's seed range (more data, new looks)")
    render.add_argument("--focus", action="append", default=[], metavar="CODE=WEIGHT",
                        help="view that class's defects WEIGHT times as often (repeat)")
    render.add_argument("--no-distractors", action="store_true",
                        help="plain walls without stains, seams and scuffs")
    render.add_argument("--world-look", action="store_true",
                        help="the world's own textures in every look (lamp, light and poses "
                             "still vary), instead of repainted ones")
    render.add_argument("--close-ups", type=float, default=0.0, metavar="FRACTION",
                        help="this fraction of frames aim the zoom camera at a feature (or "
                             "plain surface) from its pan-tilt head (default 0)")
    hold_out = render.add_mutually_exclusive_group()
    hold_out.add_argument("--hold-out", type=float, nargs=2, metavar=("START_M", "END_M"),
                          help="route stretch whose features are never rendered (default: the "
                               "world's, utility_tunnel 0-150 m)")
    hold_out.add_argument("--no-hold-out", action="store_true",
                          help="render every feature, even the world's default held-out ones")
    render.set_defaults(func=cmd_dataset_render)
    imp = dataset_sub.add_parser("import", help="import a real YOLO dataset with class renaming")
    imp.add_argument("data", help="the dataset's data.yaml")
    imp.add_argument("out", help="output folder")
    imp.add_argument("--map", action="append", default=[], metavar="NAME=CODE",
                     help="rename class NAME to CJJ 181 CODE (repeat); unmapped classes drop")
    imp.set_defaults(func=cmd_dataset_import)

    train = sub.add_parser("train", help="train models")
    train_sub = train.add_subparsers(dest="train_command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    detector = train_sub.add_parser("detector", help="train a YOLO detector (CPU) + ONNX export")
    detector.add_argument("--data", required=True, help="YOLO data.yaml")
    detector.add_argument("--out", required=True, help="output folder")
    detector.add_argument("--model", help="model .yaml (default: perception/models/"
                          "crawler_yolo_p.yaml); never hub weights")
    detector.add_argument("--weights", help="start from this project-trained .pt (fine-tune)")
    detector.add_argument("--epochs", type=int, default=30)
    detector.add_argument("--imgsz", type=int, default=512, help="training image size")
    detector.add_argument("--export-imgsz", type=int, default=640, help="ONNX input size")
    detector.add_argument("--batch", type=int, default=16)
    detector.add_argument("--seed", type=int, default=0)
    detector.add_argument("--close-mosaic", type=int, default=5,
                          help="last epochs trained without mosaic augmentation")
    detector.set_defaults(func=cmd_train_detector)

    demo = sub.add_parser("demo", help="a whole simulated inspection mission in the sewer, "
                                        "to its report")
    demo.add_argument("--out", default="out/demo", help="output folder (default %(default)s)")
    demo.add_argument("--drive", action="store_true",
                      help="only drive the sewer at 0.5 m/s (no mission): a contact sheet "
                           "and a lidar map in a few minutes")
    demo.add_argument("--bridge", action="store_true",
                      help="only the MCU emulator and the driver node, with live telemetry")
    demo.add_argument("--speedup", type=float, default=1.0,
                      help="--bridge: divide the scripted durations by this")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` and run the subcommand; exit with its status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything from --ros-args on belongs to rclpy.
    ros_args: list[str] = []
    if "--ros-args" in argv:
        cut = argv.index("--ros-args")
        argv, ros_args = argv[:cut], argv[cut:]
    args = build_parser().parse_args(argv)
    args.ros_args = ros_args
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    # The PDF's font subsetting narrates every table it touches at INFO
    logging.getLogger("fontTools").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        status = args.func(args)
    except (CrawlerError, PerceptionError) as err:
        print(f"crawler: error: {err}", file=sys.stderr)
        status = EXIT_FAILURE
    except OSError as err:
        print(f"crawler: error: {err}", file=sys.stderr)
        status = EXIT_FAILURE
    sys.exit(status)
