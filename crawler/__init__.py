"""The crawler application: typed configuration, the ``crawler`` command, node composition."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crawler-stack")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
