"""Export fixtures: ``tiny_export``, ``Exported`` and ``export_random`` live in tests/conftest.py (the
server tests reuse the same session export); imported here for the tests that name this module."""

from __future__ import annotations

from tests.conftest import Exported, export_random

__all__ = ["Exported", "export_random"]
