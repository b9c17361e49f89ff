"""Rebuild the shipped font subset: ``python -m ground_station.report.subset_font SOURCE``.

SOURCE is Debian's ``NotoSansCJK-Regular.ttc`` (package fonts-noto-cjk) or Noto's
``NotoSansCJKsc-Regular.otf``; the subset keeps ``charset.report_characters()``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fontTools import subset  # type: ignore[import-untyped]
from fontTools.ttLib import TTCollection, TTFont  # type: ignore[import-untyped]

from ground_station.report.charset import FONT_PATH, font_characters, report_characters

_SC_FACE = "Noto Sans CJK SC"  # the face of the collection to keep


def make_subset(source: Path, target: Path = FONT_PATH) -> int:
    """Write the report subset of ``source`` (a Noto Sans CJK .ttc or .otf); its size in bytes."""
    if source.suffix.lower() == ".ttc":
        faces = TTCollection(source).fonts
        names = [f["name"].getDebugName(4) for f in faces]
        if _SC_FACE not in names:
            faces_list = ", ".join(map(str, names))
            raise SystemExit(f"{source}: no face {_SC_FACE!r} (faces: {faces_list})")
        font = faces[names.index(_SC_FACE)]
    else:
        font = TTFont(source)
    options = subset.Options()
    options.hinting = False
    options.layout_features = ["kern", "vert"]
    options.name_IDs = ["*"]  # keep the copyright and licence records
    options.notdef_outline = True
    options.desubroutinize = True  # fpdf2 re-subsets CFF fonts; flat charstrings are safer
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(ord(c) for c in report_characters()))
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    font.save(target)
    return target.stat().st_size


def main(argv: list[str] | None = None) -> None:
    """``python -m ground_station.report.subset_font SOURCE_FONT``: rebuild the shipped subset."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="NotoSansCJK-Regular.ttc or NotoSansCJKsc-*.otf")
    parser.add_argument("--out", type=Path, default=FONT_PATH)
    args = parser.parse_args(argv)
    size = make_subset(args.source, args.out)
    count = len(font_characters(args.out))
    print(f"{args.out}: {count} characters, {size / 1024:.0f} KiB")  # noqa: T201


if __name__ == "__main__":
    main()
