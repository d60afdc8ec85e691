"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys

# Keep the 2-core CI machine from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_report_header(config):
    return "sam2edge: oracle tests compare against the official sam2==1.1.0 package"
