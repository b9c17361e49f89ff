"""Fixtures for tests that run real ROS 2 nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.ros_harness import RosProbe


@pytest.fixture
def probe() -> Iterator[RosProbe]:
    """A node of the test's own in a fresh context, spun in the background."""
    node = RosProbe()
    yield node
    node.close()
