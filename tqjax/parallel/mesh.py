"""The device mesh: one `Mesh` with axes ("data", "model") and Auto axis types (GSPMD)."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh

AXES = ("data", "model")


def make_mesh(data: int | None = None, model: int = 1, devices=None) -> Mesh:
    """A ``(data, model)`` mesh over ``devices`` (default: all). ``data=None`` takes what is left."""
    for name, value in (("data", data), ("model", model)):
        if value is None and name == "data":
            continue
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"mesh axis {name} must be a positive int, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"mesh axis {name} must be a positive int, got {value!r}")
    devices = _devices(devices)
    if data is None:
        if len(devices) % model:
            raise ValueError(f"model={model} does not divide the {len(devices)} devices")
        data = len(devices) // model
    if data * model != len(devices):
        raise ValueError(f"mesh ({data}, {model}) needs {data * model} devices, but {len(devices)} are available "
                         f"({devices[0].platform}); pass devices= or change the axis sizes "
                         f"(data={data}, model={model})")
    auto = (jax.sharding.AxisType.Auto,) * 2
    return Mesh(np.asarray(devices).reshape(data, model), AXES, axis_types=auto)


def _devices(devices) -> list:
    """``devices`` (default: all) as a list of distinct JAX devices."""
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
        raise TypeError(f"devices must be a list of JAX devices (jax.devices()), got "
                        f"{type(devices).__name__} {devices!r}")
    devices = list(np.asarray(devices, dtype=object).ravel()) if isinstance(devices, np.ndarray) else list(devices)
    wrong = [d for d in devices if not isinstance(d, jax.Device)]
    if wrong:
        raise TypeError(f"devices must be a list of JAX devices (jax.devices()), got "
                        f"{type(wrong[0]).__name__} {wrong[0]!r} among them")
    if not devices:
        raise ValueError("devices is empty; pass a list of JAX devices (jax.devices())")
    if len(set(devices)) < len(devices):
        raise ValueError(f"devices lists a device more than once: {devices}")
    return devices
