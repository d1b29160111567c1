"""URIs to filesystems: ``/path``, ``file://`` and ``s3://`` through ``pyarrow.fs``.

S3 settings come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), so one config works
against AWS and any S3-compatible store; inside :func:`s3_settings` (a project's own endpoint,
in a reused Ray worker) the given values win, without touching ``os.environ``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from urllib.parse import urlparse

import pyarrow.fs as pafs

__all__ = [
    "is_remote", "join", "list_files", "open_input", "read_bytes", "resolve", "s3_settings",
    "storage_options",
]

_S3_SETTINGS: ContextVar[dict[str, str] | None] = ContextVar("alray_s3_settings", default=None)


def _aws(key: str) -> str | None:
    """An ``AWS_*`` setting: the current :func:`s3_settings` first, then the environment."""
    given = _S3_SETTINGS.get()
    return (given or {}).get(key) or os.environ.get(key)


@contextlib.contextmanager
def s3_settings(env: dict[str, str] | None) -> Iterator[None]:
    """Use these ``AWS_*`` values for S3 access in this context only (a decode task's
    project settings; the worker's environment is left as it was)."""
    token = _S3_SETTINGS.set(dict(env or {}))
    try:
        yield
    finally:
        try:
            _S3_SETTINGS.reset(token)
        except ValueError:  # resumed in another context (a generator): clear it there
            _S3_SETTINGS.set(None)


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://``)."""
    return urlparse(uri).scheme in ("s3", "s3a")


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = _aws("AWS_ENDPOINT_URL") or _aws("AWS_ENDPOINT_URL_S3")
    kwargs: dict = {"region": _aws("AWS_REGION") or "us-east-1"}
    if _aws("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = _aws("AWS_ACCESS_KEY_ID")
        kwargs["secret_key"] = _aws("AWS_SECRET_ACCESS_KEY") or ""
        if _aws("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = _aws("AWS_SESSION_TOKEN")
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
        kwargs["force_virtual_addressing"] = False
    kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=5)
    return pafs.S3FileSystem(**kwargs)


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Return ``(filesystem, path)`` for a URI; plain paths are local and made absolute."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a"):
        return _s3_filesystem(), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(parsed.path)
    if parsed.scheme in ("", ) or len(parsed.scheme) == 1:  # plain or Windows drive path
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    raise ValueError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r}: use a path, file:// or s3://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with '/'."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


def list_files(uri: str, *, recursive: bool = True, what: str = "pool.uri") -> list[str]:
    """URIs of the files under a folder URI, sorted.

    Raises:
        FileNotFoundError: the folder does not exist (names ``what`` and the URI).
    """
    fs, root = resolve(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f"{what}={uri!r}: cannot list folder ({err})") from None
    prefix = uri.split("://", 1)[0] + "://" if is_remote(uri) else ""
    return sorted(prefix + i.path for i in infos if i.type == pafs.FileType.File)


def open_input(uri: str):
    """Open a URI for random-access reading."""
    fs, path = resolve(uri)
    return fs.open_input_file(path)


def read_bytes(uri: str) -> bytes:
    """Read a whole object."""
    with open_input(uri) as f:
        return f.read()


def storage_options() -> dict[str, str]:
    """Lance/LanceDB ``storage_options`` from the AWS environment (empty for local URIs)."""
    opts: dict[str, str] = {}
    endpoint = _aws("AWS_ENDPOINT_URL") or _aws("AWS_ENDPOINT_URL_S3")
    if endpoint:
        opts["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            opts["allow_http"] = "true"
    for env, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_REGION", "aws_region"),
    ):
        if _aws(env):
            opts[key] = _aws(env)
    opts.setdefault("aws_region", "us-east-1")
    return opts
