"""The torch-free name lists agree with the registries, and checking a config imports no torch."""

from __future__ import annotations

import subprocess
import sys

from alray.acquisition import SCORES, available, names


def test_names_match_the_registries():
    assert names.strategy_names() == available()
    assert names.SCORES == SCORES


def test_loading_a_config_imports_neither_torch_nor_numpy_for_names(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("acquisition:\n  strategy: bladd\n")
    code = (
        "import sys\n"
        "from alray.config import load_config\n"
        f"try:\n    load_config({str(cfg)!r})\nexcept Exception as err:\n"
        "    assert 'bald' in str(err), err\nelse:\n    raise SystemExit('accepted bladd')\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
