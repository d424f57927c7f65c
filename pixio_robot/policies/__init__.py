"""Policies, one folder each (``configuration_<name>.py`` + ``modeling_<name>.py``).

An explicit table of names; classes are imported lazily by :func:`make_policy`.
"""

from __future__ import annotations

import importlib
from typing import Any

POLICIES = {
    "mlp": (
        "pixio_robot.policies.mlp.configuration_mlp",
        "MLPPolicyConfig",
        "pixio_robot.policies.mlp.modeling_mlp",
        "MLPPolicy",
    ),
    "act": (
        "pixio_robot.policies.act.configuration_act",
        "ACTPolicyConfig",
        "pixio_robot.policies.act.modeling_act",
        "ACTPolicy",
    ),
}


def make_policy(name: str, **config: Any):
    """Build a registered policy from its config fields, e.g. ``make_policy("mlp", feature_dim=192, ...)``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid names are: {', '.join(sorted(POLICIES))}")
    config_module, config_class, model_module, model_class = POLICIES[name]
    config_type = getattr(importlib.import_module(config_module), config_class)
    model_type = getattr(importlib.import_module(model_module), model_class)
    return model_type(config_type(**config))
