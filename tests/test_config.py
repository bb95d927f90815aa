"""The strict dataclass config helper: unknown keys and refused values are one error type."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from xmr.config import check_keys, strict_from_dict
from xmr.errors import ConfigError, InputError


@dataclass
class Window:
    seconds: float = 10.0
    overlap: float = 0.5

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"Window.seconds must be positive, got {self.seconds}")


@dataclass
class Needs:
    name: str


def test_builds_and_defaults():
    assert strict_from_dict(Window, {"seconds": 5}) == Window(seconds=5, overlap=0.5)
    assert strict_from_dict(Window, None) == Window()


def test_unknown_keys_name_the_keys_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in window: secs, zz; known: overlap, seconds"):
        strict_from_dict(Window, {"secs": 5, "zz": 1}, what="window")
    with pytest.raises(ConfigError, match=r"in Window: secs"):
        check_keys(Window, {"secs": 5})
    check_keys(Window, {"seconds": 1})  # known keys pass


def test_refused_values_and_missing_fields_are_config_errors():
    with pytest.raises(ConfigError, match="must be positive"):
        strict_from_dict(Window, {"seconds": 0})
    with pytest.raises(ConfigError, match="bad Needs"):
        strict_from_dict(Needs, {})


def test_config_error_is_an_input_error_and_a_value_error():
    assert issubclass(ConfigError, InputError) and issubclass(ConfigError, ValueError)


def test_every_config_of_the_package_uses_it():
    from xmr.media.features import SpectrogramConfig
    from xmr.media.image import ImageConfig
    from xmr.models.config import ModelConfig
    from xmr.train.config import TrainConfig
    from xmr.train.losses import LossConfig

    for cls in (SpectrogramConfig, ImageConfig, ModelConfig, TrainConfig, LossConfig):
        with pytest.raises(ConfigError, match=r"unknown key\(s\)"):
            cls.from_dict({"no_such_key": 1})
