"""The device mesh: one `Mesh` with axes ("data", "model") and Auto axis types (GSPMD)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "model")


def make_mesh(data: int | None = None, model: int = 1, devices=None) -> Mesh:
    """A ``(data, model)`` mesh over ``devices`` (default: all). ``data=None`` takes what is left."""
    devices = list(jax.devices() if devices is None else devices)
    for name, value in (("data", data), ("model", model)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"mesh axis {name} must be a positive int, got {value!r}")
    if data is None:
        if len(devices) % model:
            raise ValueError(f"model={model} does not divide the {len(devices)} devices")
        data = len(devices) // model
    if data * model != len(devices):
        raise ValueError(f"mesh ({data}, {model}) needs {data * model} devices, but {len(devices)} are available "
                         f"({devices[0].platform}); pass devices= or change the axis sizes")
    auto = (jax.sharding.AxisType.Auto,) * 2
    return Mesh(np.asarray(devices).reshape(data, model), AXES, axis_types=auto)
