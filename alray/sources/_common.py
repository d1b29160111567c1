"""Helpers shared by the pool readers: retries, frame ids relative to the pool root, env.

Frame identity (DESIGN.md): an id is the frame's path relative to the pool root, plus
``:<frame index>`` inside a video; never an absolute path and never a number parsed out of a
file name, so ids are unique by construction and survive moving or remounting the data.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import re
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from alray.storage.uri import resolve

__all__ = [
    "AWS_ENV_KEYS", "VIDEO_SUFFIXES", "aws_env", "check_unique", "frame_number",
    "pack", "parent", "pool_root", "relative", "relative_keys", "unpack", "with_retry",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".m4v", ".webm")
AWS_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION")
_DIGITS = re.compile(r"(\d+)(?=\D*$)")


def aws_env(endpoint_url: str | None = None, region: str | None = None) -> dict[str, str]:
    """The driver's S3 settings (``AWS_*`` environment), overridden by config values.

    Ray workers are started before a project is opened, so the ingest passes these to its
    decode tasks, which read with them through :func:`alray.storage.uri.s3_settings`.
    """
    env = {k: os.environ[k] for k in AWS_ENV_KEYS if os.environ.get(k)}
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        env["AWS_REGION"] = region
    return env


def with_retry(fn: Callable[[], T], *, what: str, attempts: int = 4, base: float = 0.25,
               retry_on: tuple[type[BaseException], ...] = (OSError,)) -> T:
    """Call ``fn`` and retry transient I/O errors with exponential backoff.

    ``FileNotFoundError`` and ``PermissionError`` are not transient and are raised at once.

    Raises:
        The last error once ``attempts`` calls failed.
    """
    for i in range(attempts):
        try:
            return fn()
        except (FileNotFoundError, PermissionError):
            raise
        except retry_on as err:
            if i == attempts - 1:
                raise
            delay = base * (2 ** i)
            log.warning("%s: %s; retry %d/%d in %.2fs", what, err, i + 1, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def pool_root(uri: str) -> str:
    """The root URI of a folder pool: ``s3://`` prefixes as given, local paths absolute (the
    path as written, symlinks kept: ids never depend on it anyway)."""
    return uri.rstrip("/") if "://" in uri and not uri.startswith("file://") else resolve(uri)[1]


def relative(uri: str, root: str) -> str:
    """``uri`` relative to the folder ``root`` (its basename if outside it)."""
    root = root.rstrip("/")
    if uri.startswith(root + "/"):
        return uri[len(root) + 1:]
    return uri.rsplit("/", 1)[-1]


def relative_keys(uris: list[str], root: str) -> list[str | None]:
    """Each URI's normalised path under ``root`` (``a/./b/../c.png`` → ``a/c.png``), or None
    where it lies outside ``root``. Both sides are compared as written (``s3://b/x`` against
    ``s3://b``; local paths absolute)."""
    base = root.rstrip("/") + "/"
    out: list[str | None] = []
    for u in uris:  # listing, on the driver: one string operation per file
        local = "://" not in u or u.startswith("file://")
        path = resolve(u)[1] if local else u
        norm = posixpath.normpath(path) if local else path.split("://", 1)[0] + "://" + \
            posixpath.normpath(path.split("://", 1)[1])
        out.append(norm[len(base):] if norm.startswith(base) else None)
    return out


def parent(key: str) -> str:
    """The folder part of a relative key (``.`` at the root): images' ``source_id``."""
    return key.rsplit("/", 1)[0] if "/" in key else "."


def check_unique(ids: list[str] | np.ndarray, *, what: str) -> None:
    """Refuse a listing or batch in which two frames would get one id.

    Raises:
        ValueError: naming up to 10 offending ids and ``what`` produced them.
    """
    arr = np.asarray(ids, dtype=object).astype(str)
    if arr.size < 2:
        return
    uniq, counts = np.unique(arr, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise ValueError(f"{what}: {dup.size} frame id(s) would be given to more than one frame "
                         f"(ids must be unique): {dup[:10].tolist()}"
                         f"{' ...' if dup.size > 10 else ''}; nothing was ingested")


def frame_number(name: str) -> int:
    """An image's position hint for ``frame_index``: the last number in its file name
    (``frame_000123.jpg`` → 123), else 0. Never part of a frame id: ``cam0_000001.png`` and
    ``cam1_000001.png`` share it."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    m = _DIGITS.search(stem)
    return int(m.group(1)) if m and len(m.group(1)) <= 15 else 0


def pack(task: dict) -> dict:
    """Wrap a work item as one JSON string, so Ray Data never re-types its fields."""
    return {"kind": task["kind"], "payload": json.dumps(task)}


def unpack(task: dict) -> dict:
    """Inverse of :func:`pack` (plain dicts pass through)."""
    return json.loads(str(task["payload"])) if "payload" in task else dict(task)
