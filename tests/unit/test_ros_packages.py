"""The ROS 2 packages under robot_ws/src stay buildable by colcon (ament_python)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "robot_ws" / "src"
PACKAGES = sorted(p.parent for p in SRC.glob("*/package.xml"))


def test_there_are_ros_packages() -> None:
    assert [p.name for p in PACKAGES] != []


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_package_xml_matches_its_package(pkg: Path) -> None:
    root = ET.parse(pkg / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == pkg.name
    for tag in ("version", "description", "maintainer", "license"):
        assert (root.findtext(tag) or "").strip(), f"{pkg.name}: <{tag}> is empty"
    assert root.findtext("export/build_type") == "ament_python"
    assert (pkg / "resource" / pkg.name).is_file(), "ament index marker missing"
    assert (pkg / pkg.name / "__init__.py").is_file()
    assert (pkg / "setup.cfg").is_file()


@pytest.mark.parametrize("pkg", PACKAGES, ids=lambda p: p.name)
def test_console_scripts_point_at_real_functions(pkg: Path) -> None:
    scripts = re.findall(r'"(\w+) = ([\w.]+):(\w+)"', (pkg / "setup.py").read_text())
    assert scripts, f"{pkg.name}: no console_scripts entry"
    for name, module, function in scripts:
        source = (pkg / (module.replace(".", "/") + ".py")).read_text()
        assert f"def {function}(" in source, f"{name}: {module}:{function} does not exist"
