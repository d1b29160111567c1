"""URIs to filesystems: ``/path``, ``file://`` and ``s3://`` through ``pyarrow.fs``.

S3 settings come from the standard AWS environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), so one config works
against AWS and any S3-compatible store.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow.fs as pafs

__all__ = [
    "is_remote", "join", "list_files", "open_input", "read_bytes", "resolve", "storage_options",
]


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://``)."""
    return urlparse(uri).scheme in ("s3", "s3a")


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    kwargs: dict = {"region": os.environ.get("AWS_REGION", "us-east-1")}
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        kwargs["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        kwargs["secret_key"] = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
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
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3")
    if endpoint:
        opts["aws_endpoint"] = endpoint
        if endpoint.startswith("http://"):
            opts["allow_http"] = "true"
    for env, key in (
        ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        ("AWS_REGION", "aws_region"),
    ):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    opts.setdefault("aws_region", "us-east-1")
    return opts
