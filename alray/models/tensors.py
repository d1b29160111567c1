"""Stored frames (raw uint8 bytes) to model-ready tensors, vectorised over the batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

__all__ = ["images_to_tensor"]


def _contiguous_bytes(images) -> np.ndarray:
    if isinstance(images, pa.ChunkedArray):
        images = images.combine_chunks()
    if isinstance(images, pa.Array):
        offsets = np.frombuffer(images.buffers()[1], dtype=np.int32)[
            images.offset: images.offset + len(images) + 1]
        data = np.frombuffer(images.buffers()[2], dtype=np.uint8)
        return data[offsets[0]: offsets[-1]]
    return np.frombuffer(b"".join(images), dtype=np.uint8)


def images_to_tensor(images, height: int, width: int, channels: int) -> torch.Tensor:
    """Raw ``[H, W, C]`` uint8 images (pyarrow binary array or sequence of bytes) →
    normalised float32 ``[N, C, H, W]`` in ``[-1, 1]``.

    Raises:
        ValueError: the bytes do not match ``N x H x W x C`` (names the expected size).
    """
    n = len(images)
    buf = _contiguous_bytes(images)
    if buf.size != n * height * width * channels:
        raise ValueError(f"image bytes: got {buf.size}, expected {n}x{height}x{width}x{channels}; "
                         "a frame was stored with another size (re-ingest with one input_size)")
    x = torch.from_numpy(buf.reshape(n, height, width, channels).copy())
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
