"""Command line: regenerate the simulation worlds (`python -m sim_worlds.worldgen`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sim_worlds.worldgen.generate import WORLDS_DIR, stale_files, write_worlds

LOG = logging.getLogger("sim_worlds.worldgen")


def main(argv: list[str] | None = None) -> int:
    """Write the worlds (or, with --check, report files that are out of date)."""
    parser = argparse.ArgumentParser(prog="python -m sim_worlds.worldgen", description=__doc__)
    parser.add_argument("--out", type=Path, default=WORLDS_DIR, help="output folder")
    parser.add_argument("--check", action="store_true", help="only compare, exit 1 if stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.check:
        problems = stale_files(args.out)
        for relative in problems:
            LOG.error("out of date: %s", relative)
        return 1 if problems else 0
    paths = write_worlds(args.out)
    total = sum(p.stat().st_size for p in paths)
    LOG.info("wrote %d files (%.1f MB) to %s", len(paths), total / 1e6, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
