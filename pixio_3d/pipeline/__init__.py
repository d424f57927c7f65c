"""Photos in, a reconstruction out: the one place that joins the stages of pixio_3d.

* :mod:`~pixio_3d.pipeline.predict`: the network (:mod:`pixio_3d.models`) with the pose solvers
  and the depth fit (:mod:`pixio_3d.sfm`): :func:`predict`, :func:`predict_views`;
* :mod:`~pixio_3d.pipeline.photos`: :func:`reconstruct_photos`, a folder of photos to the files
  of :mod:`pixio_3d.export` (what ``pixio-recon`` runs);
* :mod:`~pixio_3d.pipeline.report`: what ``summary.json`` says about the result.
"""

from pixio_3d.pipeline.photos import OUTPUT_ENTRIES, reconstruct_photos
from pixio_3d.pipeline.predict import predict, predict_views

__all__ = ["OUTPUT_ENTRIES", "predict", "predict_views", "reconstruct_photos"]
