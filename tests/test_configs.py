"""The shipped YAML configs load through the typed loaders and agree with the defaults in code."""

from pathlib import Path

from pipeline.config import config_to_dict, load_config
from pipeline.curate import CurateConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_curate_default_yaml_is_the_built_in_default():
    assert config_to_dict(load_config(CurateConfig, CONFIGS / "curate" / "default.yaml")) == config_to_dict(CurateConfig())


def test_caption_presets_load():
    from captioner.config import load_caption_config

    for name in ("laptop.yaml", "gpu.yaml"):
        config = load_caption_config(CONFIGS / "caption" / name)
        assert config.caption is not None
