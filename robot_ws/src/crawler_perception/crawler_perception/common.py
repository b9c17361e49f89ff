"""Running a perception node: init, spin, a last word at shutdown, clean up."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import ok, try_shutdown

from crawler.errors import CrawlerError
from perception.errors import PerceptionError

NodeT = TypeVar("NodeT", bound=Node)


def spin_node(make_node: Callable[[], NodeT], args: list[str] | None,
              at_shutdown: Callable[[NodeT], None] | None = None) -> None:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown, clean up.

    Ctrl-C arrives as KeyboardInterrupt (rclpy's own SIGINT handler would shut the context
    down first), so ``at_shutdown`` can still publish. Errors raised while building the node
    (a missing model, a bad parameter) propagate after rclpy is shut down.
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            if at_shutdown is not None and ok():
                at_shutdown(node)
            node.destroy_node()
    finally:
        try_shutdown()


def exit_on_error(name: str, run: Callable[[], None]) -> None:
    """Console entry point body: run, and turn a domain error into one line and exit status 1."""
    try:
        run()
    except (PerceptionError, CrawlerError) as err:
        sys.stderr.write(f"{name}: {err}\n")
        raise SystemExit(1) from err
