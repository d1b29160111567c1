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


def test_strategy_typo_fails_at_load_naming_the_field_and_suggesting(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("acquisition:\n  strategy: bladd\n")
    with pytest.raises(ConfigError, match=r"acquisition\.strategy") as e:
        load_config(p)
    assert "Did you mean 'bald'?" in str(e.value) and "'bladd'" in str(e.value)
    with pytest.raises(ConfigError, match=r"acquisition\.score: .*Did you mean 'entropy'"):
        validate_config({"acquisition": {"score": "entropi"}})
    with pytest.raises(ConfigError, match=r"acquisition\.strategy: .*'power:bald'"):
        validate_config({"acquisition": {"strategy": "power:bal"}})
    cfg = validate_config({"acquisition": {"strategy": "topk:margin", "score": "margin"}})
    assert cfg.acquisition.strategy == "topk:margin"


def test_video_and_balanced_seed_sections():
    cfg = ProjectConfig()
    assert not cfg.acquisition.video.enabled and cfg.loop.initial_per_class is None
    cfg = validate_config({"acquisition": {"video": {"group_by": "drive_id", "min_gap_ms": 500}},
                           "loop": {"initial_per_class": 2}})
    assert cfg.acquisition.video.enabled and cfg.acquisition.video.group_by == "drive_id"
    assert cfg.loop.initial_per_class == 2
    with pytest.raises(ConfigError, match=r"acquisition\.video\.max_per_group"):
        validate_config({"acquisition": {"video": {"max_per_group": 0}}})
    with pytest.raises(ConfigError, match=r"acquisition\.video\.min_gap_ms"):
        validate_config({"acquisition": {"video": {"min_gap_ms": -1}}})
    with pytest.raises(ConfigError, match=r"loop\.initial_per_class"):
        validate_config({"loop": {"initial_per_class": 0}})
