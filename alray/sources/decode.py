"""The Ray Data decode task: pool work items → frame record batches.

Kept in its own light module (NumPy, PyAV, ``pyarrow.fs``; no torch, no LanceDB) because every
decode worker process imports it: on a 2-core node, importing the model stack in each decode
worker cost seconds of start-up per worker.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from alray.sources import get_source
from alray.storage.uri import s3_settings

__all__ = ["decode_work_items"]


def decode_work_items(batch: dict[str, np.ndarray], fmt: str, input_size: int, channels: int,
                      env: dict[str, str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data task: work items → frame record batches (see :mod:`alray.sources.base`).

    Readers may return one batch or yield several (a video streams in ``pool.batch_frames``
    batches). ``env`` carries the project's S3 settings into the worker, for this task's reads
    only: they never enter the (reused) worker's ``os.environ``.
    """
    read = get_source(fmt)[1]
    keys = list(batch)
    with s3_settings(env):
        for i in range(len(batch[keys[0]])):  # loop over work items (videos, shards)
            out = read({k: batch[k][i] for k in keys}, input_size=input_size, channels=channels)
            if isinstance(out, dict):
                yield out
            else:
                yield from out
