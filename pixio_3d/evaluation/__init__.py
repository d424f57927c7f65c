"""Scoring 3D models: the anchors' metric definitions (:mod:`~pixio_3d.evaluation.metrics`) and
evaluation of checkpoints on held-out scenes (:mod:`~pixio_3d.evaluation.evaluate`)."""
