"""Policies, one folder each (``configuration_<name>.py`` + ``modeling_<name>.py``).

An explicit table of names; classes are imported lazily by :func:`make_policy`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
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


def _classes(name: str) -> tuple[type, type]:
    """``(config class, model class)`` of a registered policy (imported now)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid names are: {', '.join(sorted(POLICIES))}")
    config_module, config_class, model_module, model_class = POLICIES[name]
    config_type = getattr(importlib.import_module(config_module), config_class)
    return config_type, getattr(importlib.import_module(model_module), model_class)


def make_policy(name: str, **config: Any):
    """Build a registered policy from its config fields, e.g. ``make_policy("mlp", feature_dim=192, ...)``."""
    config_type, model_type = _classes(name)
    return model_type(config_type(**config))


def parse_policy_config(text: str, policies: Sequence[str] = ()) -> dict[str, Any]:
    """Policy config fields from ``"name=value,name=value"`` (values read as YAML scalars:
    ``4``, ``0.01``, ``true``, ``null``); empty text gives ``{}``. Raises ValueError naming an
    item without ``=``, or a field that one of ``policies`` lacks (:func:`check_policy_config`)."""
    import yaml

    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"policy config item {item!r} is not name=value")
        values[name.strip()] = yaml.safe_load(value.strip())
    for policy in policies:
        check_policy_config(policy, values)
    return values


def check_policy_config(name: str, values: dict[str, Any]) -> None:
    """Raise ValueError naming the fields of ``values`` that policy ``name``'s config lacks
    (with the ones it has), before anything is trained."""
    import dataclasses

    known = {field.name for field in dataclasses.fields(_classes(name)[0])}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{name} policies have no config field {', '.join(unknown)}; "
            f"fields: {', '.join(sorted(known))}"
        )
