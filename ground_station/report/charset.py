"""The characters the report's fixed texts can use, and the tool that subsets the shipped font.

The PDF embeds ``fonts/NotoSansCJKsc-Report.otf``: Noto Sans CJK SC (SIL OFL 1.1, licence in
``fonts/OFL.txt``) cut down to printable ASCII, the Chinese texts of the grading tables
(``perception/grading/data/*.yaml``) and of this package's sources (the templates' labels),
and a few typographic signs. Text outside that set (a free-text mission name in Chinese, say)
is drawn as ``MISSING_GLYPH`` in the PDF; the HTML keeps it and leaves it to the browser.

Rebuild the subset after adding Chinese text to a template or a grading table::

    apt-get download fonts-noto-cjk && dpkg-deb -x fonts-noto-cjk_*.deb x
    python -m ground_station.report.subset_font \
        x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc

``tests/unit/test_report.py`` fails while a fixed text has a character the font lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

from perception.grading.tables import DATA_DIR

PACKAGE_DIR = Path(__file__).resolve().parent
FONT_PATH = PACKAGE_DIR / "fonts" / "NotoSansCJKsc-Report.otf"
FONT_LICENCE_PATH = PACKAGE_DIR / "fonts" / "OFL.txt"
GRADING_DATA_DIR = DATA_DIR
MISSING_GLYPH = "?"  # what the PDF shows for a character the shipped font lacks
EXTRA_CHARACTERS = "·•–—‘’“”…‰°±×÷≤≥≈≠→←↑↓■□●○▲△◆◇★☆※①②③④、。，：；！？（）《》【】「」『』〈〉％～"


def source_texts() -> list[Path]:
    """Files whose text the report can print: grading tables and this package's sources."""
    return sorted(GRADING_DATA_DIR.glob("*.yaml")) + sorted(PACKAGE_DIR.glob("*.py"))


def report_characters(files: Iterable[Path] | None = None) -> set[str]:
    """Printable ASCII, the extras, and every non-ASCII character of ``files``."""
    chars = {chr(c) for c in range(0x20, 0x7F)} | set(EXTRA_CHARACTERS)
    for path in source_texts() if files is None else files:
        chars |= {c for c in path.read_text(encoding="utf-8") if ord(c) > 0x7F and c.isprintable()}
    return chars


def font_characters(path: Path = FONT_PATH) -> set[str]:
    """The characters a font file maps to glyphs."""
    font = TTFont(path, lazy=True)
    try:
        return {chr(c) for c in font.getBestCmap()}
    finally:
        font.close()
