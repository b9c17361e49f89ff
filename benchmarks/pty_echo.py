"""Echo server on a pty behind a link path: the floor under the firmware RTT benchmark.

Run as ``python -m benchmarks.pty_echo LINK``; it echoes every byte until killed.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import tty
from pathlib import Path


def serve(link: Path) -> None:
    """Echo bytes written to the pty behind ``link`` until SIGTERM."""
    master_fd, slave_fd = os.openpty()
    tty.setraw(slave_fd)
    tmp = link.with_name(link.name + ".tmp")
    tmp.symlink_to(os.ttyname(slave_fd))
    tmp.replace(link)
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    while running:
        readable, _, _ = select.select([master_fd], [], [], 0.1)
        if readable:
            os.write(master_fd, os.read(master_fd, 4096))


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
