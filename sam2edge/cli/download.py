"""``sam2edge download NAME``: fetch an official checkpoint into the cache (sha256-verified) and print its path."""

from __future__ import annotations

import argparse

from sam2edge.download import CACHE_ENV, download_checkpoint


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="official variant, e.g. sam2.1_hiera_tiny or sam2/hiera_b_plus")
    p.add_argument("--cache-dir", default=None, help=f"default: ${CACHE_ENV} or ~/.cache/sam2edge")
    p.add_argument("--sha256", default=None,
                   help="the hash the file must have, where none is published (EdgeTAM) or to pin another one")


def run(args: argparse.Namespace) -> int:
    print(download_checkpoint(args.name, cache_dir=args.cache_dir, expected_sha256=args.sha256))
    return 0
