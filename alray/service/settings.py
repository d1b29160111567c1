"""Service settings (``ALRAY_`` environment variables) and bearer-token helpers.

Tokens never travel as plain text beyond the process that reads them: the builder hashes
``ALRAY_API_TOKENS`` and hands the replicas SHA-256 digests, which a presented token is
compared against in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PROJECT_NAME", "ServiceSettings", "hash_token", "token_matches"]

#: Project names the service accepts: they become folder names and URL segments.
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


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
        "derived from the token digests.")
    public_url: str | None = Field(
        None, description="Base URL annotators reach the service at (default: the request's).")
    url_expiry_s: int = Field(
        24 * 3600, ge=60, description="Lifetime of presigned/signed media URLs, in seconds.")
    max_page: int = Field(1000, ge=1, description="Largest selection page a client may ask for.")
    max_body_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes "
        "(413 beyond it); enforced by the app and configured into the HAProxy ingress.")
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

    def token_digests(self) -> list[str]:
        """SHA-256 hex digests of the configured tokens."""
        return [hash_token(t) for t in self.api_tokens.split(",") if t.strip()]


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (surrounding whitespace ignored)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


def token_matches(token: str, digests: list[str]) -> bool:
    """True if ``token`` hashes to one of ``digests``; every digest is compared, in constant
    time, so timing tells nothing about which or how much matched."""
    h = hash_token(token)
    ok = False
    for d in digests:
        ok |= hmac.compare_digest(h, d)
    return ok
