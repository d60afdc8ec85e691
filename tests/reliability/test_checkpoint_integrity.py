"""A corrupted checkpoint does not load silently (issue 13).

Probe that failed on the earlier main: one flipped byte inside the weights of a zip checkpoint loaded
(torch does not check the zip CRCs) and gave a silently different model.
"""

from __future__ import annotations

import struct
import zipfile

import pytest

from sam2edge.errors import CheckpointError

pytest.importorskip("torch")


def test_a_flipped_weight_byte_is_refused(tmp_path):
    from sam2edge.model.checkpoint import load_checkpoint, write_random_checkpoint

    path = write_random_checkpoint(tmp_path / "t.pt", "sam2.1_hiera_tiny", seed=2)
    load_checkpoint(path)  # intact: loads
    with zipfile.ZipFile(path) as z:
        info = max(z.infolist(), key=lambda i: i.file_size)  # the largest tensor's storage
    data = bytearray(path.read_bytes())
    head = info.header_offset  # the local header's own name and extra lengths (torch pads the extra field)
    name_len, extra_len = struct.unpack("<HH", data[head + 26 : head + 30])
    offset = head + 30 + name_len + extra_len
    data[offset + info.file_size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_checkpoint(path)
