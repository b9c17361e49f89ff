"""Minimal SDFormat 1.9 element builders shared by the world generators."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sim_worlds.worldgen.geometry import Pose, Vec3, fmt_num, fmt_vec, pose_text

SDF_VERSION = "1.9"
Rgba = tuple[float, float, float, float]


@dataclass(frozen=True)
class Material:
    """Surface look of a visual: colours and an optional PBR albedo texture (relative path)."""

    diffuse: Rgba
    specular: Rgba = (0.05, 0.05, 0.05, 1.0)
    albedo_map: str | None = None
    roughness: float = 0.9
    emissive: Rgba | None = None


@dataclass(frozen=True)
class Surface:
    """Which geometry elements a shape gets and how it looks."""

    material: Material | None
    collision: bool = True
    visual: bool = True
    transparency: float = 0.0


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    """Append a child element with optional text and attributes."""
    child = ET.SubElement(parent, tag, attrs)
    if text is not None:
        child.text = text
    return child


def sdf_root() -> ET.Element:
    """The <sdf> root element at the version this package writes."""
    return ET.Element("sdf", {"version": SDF_VERSION})


def add_pose(parent: ET.Element, pose: Pose) -> None:
    """Append a <pose> unless it is the identity."""
    text = pose_text(pose)
    if text != "0 0 0 0 0 0":
        sub(parent, "pose", text)


def add_material(parent: ET.Element, material: Material) -> None:
    """Append a <material> with classic colours and a PBR metal workflow."""
    element = sub(parent, "material")
    sub(element, "ambient", fmt_vec(material.diffuse, 3))
    sub(element, "diffuse", fmt_vec(material.diffuse, 3))
    sub(element, "specular", fmt_vec(material.specular, 3))
    if material.emissive is not None:
        sub(element, "emissive", fmt_vec(material.emissive, 3))
    pbr = sub(sub(element, "pbr"), "metal")
    if material.albedo_map is not None:
        sub(pbr, "albedo_map", material.albedo_map)
    sub(pbr, "roughness", fmt_num(material.roughness, 3))
    sub(pbr, "metalness", "0")


def _geometry_box(parent: ET.Element, size_m: Vec3) -> None:
    sub(sub(sub(parent, "geometry"), "box"), "size", fmt_vec(size_m))


def _geometry_cylinder(parent: ET.Element, radius_m: float, length_m: float) -> None:
    cylinder = sub(sub(parent, "geometry"), "cylinder")
    sub(cylinder, "radius", fmt_num(radius_m))
    sub(cylinder, "length", fmt_num(length_m))


def _add_shape(
    link: ET.Element,
    name: str,
    pose: Pose,
    surface: Surface,
    geometry: tuple[str, Vec3],
) -> None:
    kind, dims = geometry
    for tag, wanted in (("collision", surface.collision), ("visual", surface.visual)):
        if not wanted:
            continue
        element = sub(link, tag, name=name if tag == "visual" else f"{name}_c")
        add_pose(element, pose)
        if kind == "box":
            _geometry_box(element, dims)
        else:
            _geometry_cylinder(element, dims[0], dims[1])
        if tag == "visual":
            if surface.transparency > 0.0:
                sub(element, "transparency", fmt_num(surface.transparency, 3))
            if surface.material is not None:
                add_material(element, surface.material)


def add_box(link: ET.Element, name: str, size_m: Vec3, pose: Pose, surface: Surface) -> None:
    """Append a box as visual and/or collision (collision names end in '_c')."""
    _add_shape(link, name, pose, surface, ("box", size_m))


def add_cylinder(
    link: ET.Element, name: str, radius_m: float, length_m: float, pose: Pose, surface: Surface
) -> None:
    """Append a cylinder (axis along its local z) as visual and/or collision."""
    _add_shape(link, name, pose, surface, ("cylinder", (radius_m, length_m, 0.0)))


def static_model(world: ET.Element, name: str, pose: Pose | None = None) -> ET.Element:
    """Append a static model and return the model element."""
    model = sub(world, "model", name=name)
    sub(model, "static", "true")
    if pose is not None:
        add_pose(model, pose)
    return model


def add_link(model: ET.Element, name: str, pose: Pose | None = None) -> ET.Element:
    """Append a link and return it."""
    link = sub(model, "link", name=name)
    if pose is not None:
        add_pose(link, pose)
    return link


def to_xml_bytes(root: ET.Element) -> bytes:
    """Serialise with two-space indentation, an XML declaration and a final newline."""
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode", short_empty_elements=True)
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")
