"""Errors of the crawler application layer."""

from __future__ import annotations


class CrawlerError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class ConfigError(CrawlerError):
    """A configuration file is missing, malformed or invalid; the message names file and line."""
