"""Helpers shared by the video, manifest and image-prefix readers: retries, ids, env."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = [
    "AWS_ENV_KEYS", "VIDEO_SUFFIXES", "apply_env", "aws_env", "frame_number", "pack", "relative",
    "unpack", "with_retry",
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
    decode tasks, which apply them with :func:`apply_env` before reading.
    """
    env = {k: os.environ[k] for k in AWS_ENV_KEYS if os.environ.get(k)}
    if endpoint_url:
        env["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        env["AWS_REGION"] = region
    return env


def apply_env(env: dict[str, str] | None) -> None:
    """Set the given ``AWS_*`` variables in this (worker) process."""
    for k, v in (env or {}).items():
        if k in AWS_ENV_KEYS:
            os.environ[k] = v


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


def relative(uri: str, root: str) -> str:
    """``uri`` relative to the folder ``root`` (its basename if outside it)."""
    root = root.rstrip("/")
    if uri.startswith(root + "/"):
        return uri[len(root) + 1:]
    return uri.rsplit("/", 1)[-1]


def frame_number(name: str) -> int:
    """A stable frame index for an image file: its last number (``frame_000123.jpg`` → 123),
    else a 62-bit hash of the name."""
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    m = _DIGITS.search(stem)
    if m and len(m.group(1)) <= 15:
        return int(m.group(1))
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 2


def pack(task: dict) -> dict:
    """Wrap a work item as one JSON string, so Ray Data never re-types its fields."""
    return {"kind": task["kind"], "payload": json.dumps(task)}


def unpack(task: dict) -> dict:
    """Inverse of :func:`pack` (plain dicts pass through)."""
    return json.loads(str(task["payload"])) if "payload" in task else dict(task)
