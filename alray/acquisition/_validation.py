"""Boundary validation and array conversion shared by scorers and selectors."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

# Target size of one working chunk, in float32 elements (~32 MiB).
CHUNK_ELEMENTS = 8 * 1024 * 1024


def check_int(value: Any, name: str, *, min_value: int | None = None) -> int:
    """Validate an integer parameter, naming it in the error.

    Args:
        value: The value to check.
        name: Parameter name used in the error message.
        min_value: Smallest allowed value.

    Returns:
        ``value`` as a Python ``int``.

    Raises:
        ValueError: If ``value`` is not an integer or is below ``min_value``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r}: must be an integer")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name}={value}: must be >= {min_value}")
    return int(value)


def check_float(value: Any, name: str, *, min_value: float | None = None) -> float:
    """Validate a real-valued parameter, naming it in the error.

    Args:
        value: The value to check.
        name: Parameter name used in the error message.
        min_value: Smallest allowed value.

    Returns:
        ``value`` as a Python ``float``.

    Raises:
        ValueError: If ``value`` is not a finite real number or is below ``min_value``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}={value!r}: must be a finite number")
    if min_value is not None and value < min_value:
        raise ValueError(f"{name}={value}: must be >= {min_value}")
    return float(value)


def resolve_device(device: str | torch.device) -> torch.device:
    """Return a ``torch.device``, refusing CUDA when it is not available.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.

    Returns:
        The device.

    Raises:
        ValueError: If the device string is malformed or CUDA is unavailable.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r}: not a torch device ({exc})") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available on this machine; use 'cpu'")
    return dev


def as_tensor(x: Any, name: str, *, ndim: tuple[int, ...], dtype=torch.float32) -> torch.Tensor:
    """View a numpy array or tensor as a CPU or device tensor without copying when possible.

    Args:
        x: ``np.ndarray`` or ``torch.Tensor``.
        name: Parameter name used in errors.
        ndim: Allowed numbers of dimensions.
        dtype: Target dtype; a copy is made only if ``x`` has another dtype.

    Returns:
        A contiguous tensor of ``dtype`` on the device ``x`` lives on.

    Raises:
        ValueError: If ``x`` is not an array or has the wrong number of dimensions.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype == object or not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{name}: must be a numeric array, got dtype {x.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise ValueError(f"{name}: must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.ndim not in ndim:
        shapes = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name}: must be {shapes}, got shape {tuple(t.shape)}")
    return t.to(dtype).contiguous()


def as_bool_mask(x: Any, name: str, n: int) -> np.ndarray:
    """Validate a boolean row mask.

    Args:
        x: Boolean array-like ``[N]`` or ``None``.
        name: Parameter name used in errors.
        n: Expected length.

    Returns:
        ``bool[N]`` numpy array (all ``False`` for ``None``).

    Raises:
        ValueError: If ``x`` is not boolean or has the wrong length.
    """
    if x is None:
        return np.zeros(n, dtype=bool)
    arr = x.cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype != bool:
        raise ValueError(
            f"{name}: must be a boolean mask over the N={n} pool rows, got dtype {arr.dtype}"
            " (turn row indices into a mask with np.isin(np.arange(N), indices))"
        )
    if arr.shape != (n,):
        raise ValueError(f"{name}: must have shape ({n},), got {arr.shape}")
    return arr


def rows_per_chunk(row_elements: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Number of rows of ``row_elements`` each that fit a chunk budget.

    Args:
        row_elements: Elements per row.
        budget: Elements per chunk.

    Returns:
        A chunk length of at least 1.
    """
    return max(1, budget // max(1, row_elements))
