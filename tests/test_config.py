from pathlib import Path

import pytest

from alray.config import ConfigError, ProjectConfig, load_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_loads_and_paths_become_absolute():
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    assert cfg.acquisition.strategy == "bald"
    assert Path(cfg.pool.uri).is_absolute() and Path(cfg.storage.uri).is_absolute()


def test_every_field_has_a_default_and_a_description():
    ProjectConfig()  # all defaults valid

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(ProjectConfig)


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("acquisition:\n  strategy: bald\n  batchsize: 10\n")
    with pytest.raises(ConfigError, match=r"acquisition\.batchsize: unknown key"):
        load_config(p)


def test_bad_value_names_field_and_value():
    with pytest.raises(ConfigError, match=r"train\.lr") as e:
        validate_config({"train": {"lr": -1}})
    assert "-1" in str(e.value)


def test_fractions_must_leave_a_pool():
    with pytest.raises(ConfigError, match="val_fraction"):
        validate_config({"pool": {"val_fraction": 0.5, "test_fraction": 0.5}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("pool: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(top)


def test_overrides_are_validated():
    cfg = ProjectConfig().with_overrides(**{"acquisition.batch_size": 5})
    assert cfg.acquisition.batch_size == 5
    with pytest.raises(ConfigError, match="acquisition.batch_size"):
        cfg.with_overrides(**{"acquisition.batch_size": 0})
