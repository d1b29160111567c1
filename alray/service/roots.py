"""Data roots: the locations projects created over HTTP may read, and path scrubbing.

The operator lists them in ``ALRAY_DATA_ROOTS`` (comma-separated URI prefixes, e.g.
``s3://fleet-raw/,/data/pools/``); unset, the only root is the folder of the config
``alray serve`` was started with. A local location is resolved (``..`` collapsed, symlinks
followed) before it is compared, so neither ``/data/pools/../../etc`` nor a symlink inside a
root that points out of it gets through; an ``s3://`` URI is compared as a normalised string.

Responses and job errors never show an absolute local path of the server: :meth:`DataRoots.show`
gives a location relative to its root (or ``<path>``), and :meth:`DataRoots.scrub` rewrites
every absolute path inside a message the same way.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alray.service.errors import Forbidden

__all__ = ["DataRoots", "SETTING"]

#: The setting named in every refusal.
SETTING = "ALRAY_DATA_ROOTS"
_PATH = re.compile(r"(?:file://|(?<![\w.:/~-]))/[^\s'\"`,;:()<>\[\]{}]*")


def _normal(uri: str, base: str | None = None) -> str:
    """A comparable form: ``s3://bucket/key`` normalised, or a resolved absolute local path.

    Raises:
        ValueError: an unsupported scheme.
    """
    p = urlparse(uri)
    if p.scheme in ("s3", "s3a"):  # '..' may not climb out of the bucket either
        path = posixpath.normpath("/" + p.netloc + p.path).lstrip("/")
        return "s3://" + ("" if path == "." else path)
    if p.scheme == "file":
        uri = p.path
    elif p.scheme and len(p.scheme) > 1:
        raise ValueError(f"unsupported URI scheme {p.scheme!r}: use a path, file:// or s3://")
    if not os.path.isabs(uri):
        uri = os.path.join(base or os.getcwd(), uri)
    return os.path.realpath(uri)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class DataRoots:
    """The allowed locations of one service, and the service root (whose paths are shown
    relative to it too).

    Args:
        roots: URI prefixes (local folders or ``s3://`` prefixes).
        service_root: the service root URI.
    """

    def __init__(self, roots: Iterable[str], service_root: str | None = None):
        self.roots = [_normal(r.strip()) for r in roots if r and r.strip()]
        self.local = [r for r in self.roots if not r.startswith("s3://")]
        self.service_root = _normal(service_root) if service_root else None
        self._shown: dict[str, str] = {}  # show() results (a realpath each otherwise)

    @classmethod
    def from_settings(cls, data_roots: str, config_dir: str | None,
                      service_root: str | None) -> DataRoots:
        """``ALRAY_DATA_ROOTS`` if set, else the served config's folder (else none at all)."""
        roots = [r for r in data_roots.split(",") if r.strip()]
        return cls(roots or ([config_dir] if config_dir else []), service_root)

    # ---- checks -------------------------------------------------------------------------
    def resolve(self, uri: str) -> str:
        """The resolved form of ``uri``; a relative local path is taken relative to the first
        local root (as :meth:`show` gives it), not to the server's working directory."""
        return _normal(uri, self.local[0] if self.local else None)

    def allows(self, uri: str) -> bool:
        """True if ``uri`` (resolved) lies under one of the roots."""
        try:
            path = self.resolve(uri)
        except ValueError:
            return False
        return any(_under(path, r) for r in self.roots)

    def check(self, uri: str, field: str) -> str:
        """The resolved ``uri``, if allowed.

        Raises:
            Forbidden: it lies outside every root (403, naming the setting); the message
                never says whether the location exists.
        """
        if not self.allows(uri):
            raise Forbidden(f"{field}={uri!r}: outside the locations this service may read; "
                            f"the operator lists them in {SETTING}"
                            + ("" if self.roots else " (none is set)"))
        return self.resolve(uri)

    def check_all(self, uris: pa.Array | pa.ChunkedArray | list[str], field: str) -> None:
        """Check many URIs (a manifest's ``uri`` column) at once.

        ``s3://`` entries are compared as strings in Arrow; a local entry needs its own
        ``realpath`` (symlinks), once per distinct entry.

        Raises:
            Forbidden: the first entry outside every root (403).
        """
        col = pc.unique(pc.cast(pa.chunked_array([uris]) if isinstance(uris, list) else uris,
                                pa.string())).drop_null()
        s3 = pc.starts_with(col, "s3://").to_numpy(zero_copy_only=False)
        plain = ~np.asarray(pc.match_substring_regex(col, r"/\.\.?(/|$)|[^:]//")
                            .to_numpy(zero_copy_only=False))
        ok = np.zeros(len(col), bool)
        for r in (r for r in self.roots if r.startswith("s3://")):
            ok |= np.asarray(pc.or_(pc.equal(col, r), pc.starts_with(col, r.rstrip("/") + "/"))
                             .to_numpy(zero_copy_only=False))
        ok &= s3 & plain  # an s3 entry with '..' or '//' is normalised below
        for i in np.flatnonzero(~ok):  # local entries (I/O per entry) and odd s3 ones
            self.check(col[int(i)].as_py(), field)

    # ---- showing paths ------------------------------------------------------------------
    def show(self, uri: str | None) -> str | None:
        """``uri`` as a response may show it: ``s3://`` unchanged, a local path relative to
        the data root (or the service root) it lies under, else ``<path>``."""
        if uri is None:
            return None
        if "://" in uri and not uri.startswith("file://"):
            return uri
        shown = self._shown.get(uri)
        if shown is None:
            if len(self._shown) > 100_000:
                self._shown.clear()
            shown = self._shown[uri] = self._show_local(uri)
        return shown

    def _show_local(self, uri: str) -> str:
        try:
            path = _normal(uri)
        except ValueError:
            return "<path>"
        roots = [r for r in (*self.local, self.service_root)
                 if r and not r.startswith("s3://") and _under(path, r)]
        if not roots:
            return "<path>"
        root = max(roots, key=len)  # the closest: the service root inside a data root
        return os.path.relpath(path, root) if path != root else "."

    def scrub(self, text: str | None) -> str | None:
        """A message with every absolute local path shown as :meth:`show` gives it."""
        if not text:
            return text
        return _PATH.sub(lambda m: self.show(m.group(0)) or "<path>", text)
