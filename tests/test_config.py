from __future__ import annotations

from pathlib import Path

import pytest

from codey.config import load_settings
from codey.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings()
    assert settings.model.path is None
    assert settings.model.context_length == 8192
    assert settings.model.cache_dir.name == "models"


def test_environment_and_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "codey.toml"
    config.write_text("[model]\ncontext_length = 2048\nthreads = 1\n[chat]\nmax_tokens = 100\n")
    monkeypatch.setenv("CODEY_MODEL__CONTEXT_LENGTH", "4096")
    settings = load_settings(config)
    assert settings.model.context_length == 4096  # the environment beats the file
    assert settings.model.threads == 1
    assert settings.chat.max_tokens == 100


def test_unknown_keys_and_bad_values_are_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "codey.toml"
    config.write_text("[model]\ncontext_lenght = 2048\n")
    with pytest.raises(ConfigError, match="context_lenght"):
        load_settings(config)
    config.write_text("[model]\ncontext_length = 10\n")
    with pytest.raises(ConfigError, match="context_length"):
        load_settings(config)


def test_a_missing_config_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
