"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys

# Keep the 2-core CI machine from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_report_header(config):
    return "sam2edge: oracle tests compare against the official sam2==1.1.0 package"


# -- measured figures in the test output ----------------------------------------------------
# Oracle and measurement tests print their worst differences; pytest hides the output of
# passing tests, so it is collected here and reprinted once at the end of the run.
_MEASURED: list[tuple[str, str]] = []
_REPORT_FILES = ("oracle", "test_predictor_api", "test_preprocess", "test_postprocess", "test_memory", "test_cache",
                 "test_stream", "test_tracker", "test_export", "test_verify", "test_onnx", "test_edgetam")


def pytest_runtest_logreport(report):
    if report.when != "call" or not any(key in report.nodeid for key in _REPORT_FILES):
        return
    text = "".join(content for name, content in report.sections if name.startswith("Captured stdout"))
    if text.strip():
        _MEASURED.append((report.nodeid, text.rstrip()))


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.section("measured: worst differences vs the oracle, and other figures")
    for nodeid, text in _MEASURED:
        terminalreporter.write_line(nodeid)
        for line in text.splitlines():
            if line.strip():
                terminalreporter.write_line("    " + line)
