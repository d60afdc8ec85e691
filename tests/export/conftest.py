"""The export tests share the session export of tests/conftest.py (``tiny_export``)."""

from tests.conftest import Exported, export_random  # noqa: F401 - re-exported for the export tests
