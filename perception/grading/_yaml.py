"""Reading a YAML data file into checked values, with file, key path and line in every error.

The document is composed once into yaml nodes (which remember their line) and constructed into
plain Python values; a ``View`` walks the values and, on a bad or missing entry, looks the key
path up in the node tree so the error can name the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml

from perception.grading.errors import GradingTableError

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """A parsed data file: its path, the node tree (for line numbers) and the values."""

    path: Path
    root_node: yaml.Node
    data: object

    def line_of(self, where: KeyPath) -> int:
        """1-based line of the deepest node on ``where`` that exists in the file."""
        node = self.root_node
        for step in where:
            child = _child_node(node, step)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1

    def fail(self, where: KeyPath, message: str) -> NoReturn:
        """Raise a GradingTableError naming the file, the line and the key path."""
        dotted = _dotted(where) or "<document>"
        raise GradingTableError(f"{self.path}:{self.line_of(where)}: {dotted}: {message}")


def load_document(path: Path) -> Document:
    """Parse ``path``; syntax errors, duplicate keys and an empty file raise GradingTableError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GradingTableError(f"{path}: cannot read grading data: {err}") from err
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise GradingTableError(f"{path}: the file is empty")
        _check_duplicate_keys(path, node)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        reason = err.problem or err.context or "invalid YAML"
        raise GradingTableError(f"{path}{line}: invalid YAML: {reason}") from err
    except yaml.YAMLError as err:
        raise GradingTableError(f"{path}: invalid YAML: {err}") from err
    finally:
        loader.dispose()
    return Document(path, node, data)


@dataclass(frozen=True)
class View:
    """One value of a document at a key path, with typed, checked accessors."""

    doc: Document
    where: KeyPath
    value: object

    def fail(self, message: str) -> NoReturn:
        """Raise a GradingTableError at this value."""
        self.doc.fail(self.where, message)

    def mapping(self) -> dict[str, object]:
        """The value as a mapping with string keys."""
        if not isinstance(self.value, dict):
            self.fail(f"expected a mapping, got {_type_name(self.value)}")
        for key in self.value:
            if not isinstance(key, str):
                self.fail(f"key {key!r} is not a string (quote it)")
        return self.value

    def only_keys(self, required: set[str], optional: set[str] | None = None) -> None:
        """Fail on a missing required key or a key that is neither required nor optional."""
        keys = set(self.mapping())
        missing = sorted(required - keys)
        if missing:
            self.fail(f"missing {', '.join(repr(k) for k in missing)}")
        unknown = sorted(keys - required - (optional or set()))
        if unknown:
            self.fail(f"unknown key(s) {', '.join(repr(k) for k in unknown)}")

    def has(self, key: str) -> bool:
        """Whether the mapping holds ``key`` (with any value, null included)."""
        return key in self.mapping()

    def child(self, key: str) -> View:
        """The value under a required key."""
        values = self.mapping()
        if key not in values:
            self.fail(f"missing {key!r}")
        return View(self.doc, (*self.where, key), values[key])

    def items(self) -> list[tuple[str, View]]:
        """Key and value of each entry of a non-empty mapping, in file order."""
        values = self.mapping()
        if not values:
            self.fail("is empty")
        return [(key, View(self.doc, (*self.where, key), v)) for key, v in values.items()]

    def elements(self) -> list[View]:
        """The items of a non-empty list."""
        if not isinstance(self.value, list) or not self.value:
            self.fail(f"expected a non-empty list, got {_type_name(self.value)}")
        return [View(self.doc, (*self.where, i), v) for i, v in enumerate(self.value)]

    def string(self) -> str:
        """The value as a non-empty string."""
        if not isinstance(self.value, str) or not self.value.strip():
            self.fail(f"expected a non-empty string, got {_type_name(self.value)}")
        return self.value

    def number(self) -> float:
        """The value as a finite number (bool is not a number here)."""
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            self.fail(f"expected a number, got {_type_name(self.value)}")
        if not math.isfinite(self.value):
            self.fail("expected a finite number")
        return float(self.value)

    def optional_number(self) -> float | None:
        """The value as a finite number, or None for null."""
        return None if self.value is None else self.number()

    def integer(self) -> int:
        """The value as an integer."""
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            self.fail(f"expected an integer, got {_type_name(self.value)}")
        return self.value

    def boolean(self) -> bool:
        """The value as true/false."""
        if not isinstance(self.value, bool):
            self.fail(f"expected true or false, got {_type_name(self.value)}")
        return self.value

    def strings(self) -> tuple[str, ...]:
        """The value as a (possibly empty) list of non-empty strings."""
        if not isinstance(self.value, list):
            self.fail(f"expected a list, got {_type_name(self.value)}")
        return tuple(View(self.doc, (*self.where, i), v).string() for i, v in enumerate(self.value))


def root_view(doc: Document) -> View:
    """The document's top level."""
    return View(doc, (), doc.data)


def _child_node(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == step:
                return value_node  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]  # type: ignore[no-any-return]
    return None


def _check_duplicate_keys(path: Path, node: yaml.Node) -> None:
    """yaml keeps the last of two equal keys silently; a table must not lose a row that way."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    line = key_node.start_mark.line + 1
                    raise GradingTableError(f"{path}:{line}: duplicate key {key_node.value!r}")
                seen.add(key_node.value)
            _check_duplicate_keys(path, value_node)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(path, item)


def _dotted(where: KeyPath) -> str:
    text = ""
    for step in where:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__
