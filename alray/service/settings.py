"""Service settings (``ALRAY_`` environment variables) and bearer-token helpers.

Tokens never travel as plain text beyond the process that reads them: the builder hashes
``ALRAY_API_TOKENS`` and hands the replicas SHA-256 digests with their scopes, which a presented
token is compared against in constant time.

Scopes (``ALRAY_API_TOKENS=admin:xyz,label:abc,read:def``; a token without a scope is
``admin``): ``read`` may GET, ``label`` may also post labels and webhooks, ``admin`` may also
create projects and start ingests and rounds. ``ALRAY_METRICS_TOKEN`` has its own scope,
``metrics``, valid only on ``/metrics``.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_NAME", "SCOPES", "ServiceSettings", "hash_token", "parse_tokens",
           "token_scope"]

#: Project names the service accepts (match with ``fullmatch``): folder names, URL segments.
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: API token scopes, weakest first: each may do what the ones before it may.
SCOPES = ("read", "label", "admin")


class ServiceSettings(BaseSettings):
    """Runtime settings of ``alray serve`` (read from ``ALRAY_*`` environment variables)."""

    model_config = SettingsConfigDict(env_prefix="ALRAY_", extra="ignore")

    service_root: str = Field(
        "runs/service", description="Folder or s3:// URI under which the service keeps its "
        "catalog (`_alray/`) and the stores of projects created over HTTP (`projects/<name>`).")
    api_tokens: str = Field(
        "", repr=False, description="Comma-separated bearer tokens (a mounted secret). Empty: "
        "every /v1 request is refused.")
    signing_key: str = Field(
        "", repr=False, description="HMAC key of the media URLs in selection exports; empty: "
        "a random key generated once and kept in the service root (`_alray/signing.key`, "
        "mode 0600; in the catalog on s3://).")
    public_url: str | None = Field(
        None, description="Base URL annotators reach the service at (default: bind_url, else "
        "the address the replica's socket is bound to; never the request's Host header).")
    bind_url: str | None = Field(
        None, description="The address `alray serve` listens on (set by the command).")
    url_expiry_s: int = Field(
        24 * 3600, ge=60, description="Lifetime of presigned/signed media URLs, in seconds.")
    max_page: int = Field(1000, ge=1, description="Largest selection page a client may ask for.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes "
        "(413 beyond it); enforced by the app and configured into the HAProxy ingress.")
    label_writer_retry_s: float = Field(
        30.0, ge=0, description="How long a label request retries (exponential backoff) while "
        "the label writer actor restarts before answering 503.")
    data_roots: str = Field(
        "", description="Comma-separated URI prefixes (folders or s3:// prefixes) that projects "
        "created over HTTP may read (pool.uri, model.weights_uri, manifest entries). Empty: "
        "only locations under the folder of the config `alray serve` was started with.")
    config_dir: str | None = Field(
        None, description="Folder of the config `alray serve` was started with (set by the "
        "command; the data root when ALRAY_DATA_ROOTS is empty).")
    metrics_token: str = Field(
        "", repr=False, description="Bearer token of GET /metrics. Set: /metrics requires it "
        "and labels series by project. Empty: /metrics is open and gives aggregate series only.")

    @field_validator("service_root")
    @classmethod
    def _root(cls, v: str) -> str:
        from alray.config import _absolute

        return _absolute(v)

    def token_scopes(self) -> dict[str, str]:
        """SHA-256 hex digest -> scope of every configured token (metrics token included)."""
        out = parse_tokens(self.api_tokens)
        if self.metrics_token.strip():
            out[hash_token(self.metrics_token)] = "metrics"
        return out


def parse_tokens(spec: str) -> dict[str, str]:
    """``"admin:x,label:y,z"`` -> {digest: scope}; a token without a known scope prefix is
    ``admin`` (the form before scopes existed keeps working)."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        scope, sep, token = item.partition(":")
        if not (sep and scope in SCOPES):
            scope, token = "admin", item
        if token.strip():
            out[hash_token(token)] = scope
    return out


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (surrounding whitespace ignored)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_scope(token: str, scopes: dict[str, str]) -> str | None:
    """The scope of ``token`` (None: unknown); every digest is compared, in constant time, so
    timing tells nothing about which or how much matched."""
    h = hash_token(token)
    found = None
    for d, scope in scopes.items():
        if hmac.compare_digest(h, d):
            found = scope
    return found
