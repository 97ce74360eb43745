"""Settings: one object, from `CODEY_*` environment variables and an optional TOML file.

Created once by the entry point (CLI or app factory) and passed down; no other module reads the
environment. Nested fields use `__` in variable names: `CODEY_MODEL__CONTEXT_LENGTH=4096`.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from codey.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Section):
    """Which GGUF file the embedded engine runs, and how."""

    path: Path | None = Field(
        default=None, description="Any GGUF file; unset means the embedded Qwen2.5-Coder model."
    )
    sha256: str | None = Field(
        default=None, description="Expected SHA-256 of `path`; checked before first use if set."
    )
    cache_dir: Path = Field(
        default_factory=lambda: platformdirs.user_cache_path("codey") / "models",
        description="Where the embedded model is assembled.",
    )
    context_length: int = Field(default=8192, ge=512, le=32768, description="Engine n_ctx.")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    batch_size: int = Field(default=512, ge=32, le=8192)
    max_queue: int = Field(
        default=32, ge=1, description="Engine jobs queued or running before new ones are refused."
    )
    family: str | None = Field(
        default=None, description="Fill-in-the-middle template family; unset reads the GGUF."
    )


class StoreSettings(_Section):
    """Where state that must survive a restart is kept."""

    sqlite_path: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("codey") / "codey.db"
    )


class GenerationSettings(_Section):
    max_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)


class ChatSettings(_Section):
    max_tokens: int = Field(default=512, ge=1)
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)


class CompletionSettings(_Section):
    max_tokens: int = Field(default=64, ge=1, le=512)


class ServerSettings(_Section):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Larger request bodies get 413."
    )
    retry_after_seconds: int = Field(default=2, ge=1, description="Retry-After sent with 503.")
    model_aliases: list[str] = Field(
        default_factory=lambda: ["codey"],
        description="Extra model names the API accepts for the served model.",
    )


class Settings(BaseSettings):
    """Everything configurable in codey."""

    model_config = SettingsConfigDict(
        env_prefix="CODEY_", env_nested_delimiter="__", extra="forbid"
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Explicit arguments beat the environment, which beats the TOML file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Build the settings from the environment, `config_file` (TOML) and explicit overrides."""
    if config_file is None:
        return Settings(**overrides)
    if not config_file.is_file():
        raise ConfigError(
            f"Config file {config_file} does not exist.", hint="Pass the path of a TOML file."
        )

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    try:
        return FileSettings(**overrides)
    except ValueError as exc:
        raise ConfigError(f"Config file {config_file} is invalid: {exc}") from exc
