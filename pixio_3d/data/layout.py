"""Constants of the multi-view scene layout (:mod:`pixio_3d.data.dataset`), importable without
torch: the format name, its conventions, the file types and the view selections of
:class:`~pixio_3d.data.dataset.MultiViewDataset`."""

FORMAT = "pixio-multiview-v1"
CONVENTIONS = {
    "camera": "OpenCV: x right, y down, z forward",
    "pose": "cam2world: camera to world, metres",
    "pixel_center": "pixel (col c, row r) centre at (c + 0.5, r + 0.5)",
    "depth": "z-depth along the optical axis in metres; 0 = invalid",
    "object_ids": "0 = no surface, 1 = room, 2 + i = scene.json objects[i]",
}
RGB_EXTENSIONS = (".png", ".jpg", ".jpeg")
DEPTH_PNG_UNITS_PER_METRE = 1000.0
VIEW_SELECTIONS = ("overlap", "sequential", "random")
