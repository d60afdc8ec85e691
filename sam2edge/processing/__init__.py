"""Host operations in numpy and OpenCV, equal to the official pre- and post-processing (no torch)."""
