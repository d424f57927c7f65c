"""Pixio for 3D: multi-view reconstruction, monocular depth, synthetic scene data and export."""
