"""pixio_robot: behaviour cloning on frozen Pixio features, evaluated by success rate in MuJoCo.

The data flow::

    collect_demos (scripted experts, robomimic HDF5)  ->  cached_demo_features (frozen encoder)
      -> train_policy (make_policy: mlp | act, on the shared engine)  ->  a policy checkpoint
      -> evaluate_policy (parallel Gymnasium workers, videos)  ->  results.json / results.md

Where to start: ``pixio-robot demo`` (:mod:`pixio_robot.cli`), or :func:`train_policy` and
:func:`evaluate_policy` from Python; :func:`load_policy` reads a checkpoint. robomimic glue is in
:mod:`pixio_robot.integrations`. Names are imported on first use.
"""

from typing import TYPE_CHECKING

from pixio_core.lazy import lazy_exports

_EXPORTS = {
    "DemoFeatureDataset": "pixio_robot.bc",
    "train_bc": "pixio_robot.bc",
    "load_policy": "pixio_robot.checkpoint",
    "save_policy": "pixio_robot.checkpoint",
    "collect_demos": "pixio_robot.demos",
    "inspect_demos": "pixio_robot.demos",
    "evaluate": "pixio_robot.evaluation",
    "cached_demo_features": "pixio_robot.features",
    "evaluate_policy": "pixio_robot.pipeline",
    "train_policy": "pixio_robot.pipeline",
    "make_policy": "pixio_robot.policies",
    "Policy": "pixio_robot.policies.base",
}
__all__ = [
    "DemoFeatureDataset",
    "Policy",
    "cached_demo_features",
    "collect_demos",
    "evaluate",
    "evaluate_policy",
    "inspect_demos",
    "load_policy",
    "make_policy",
    "save_policy",
    "train_bc",
    "train_policy",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from pixio_robot.bc import (
        DemoFeatureDataset,
        train_bc,
    )
    from pixio_robot.checkpoint import (
        load_policy,
        save_policy,
    )
    from pixio_robot.demos import (
        collect_demos,
        inspect_demos,
    )
    from pixio_robot.evaluation import evaluate
    from pixio_robot.features import cached_demo_features
    from pixio_robot.pipeline import (
        evaluate_policy,
        train_policy,
    )
    from pixio_robot.policies import make_policy
    from pixio_robot.policies.base import Policy
