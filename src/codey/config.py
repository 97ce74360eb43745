"""Settings: one object, from `CODEY_*` environment variables and an optional TOML file.

Created once by the entry point (CLI or app factory) and passed down; no other module reads the
environment. Nested fields use `__` in variable names: `CODEY_MODEL__CONTEXT_LENGTH=4096`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from codey.errors import ConfigError
from codey.provision.catalogue import CATALOGUE, LARGE, SMALL


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Section):
    """Which GGUF file the embedded engine runs, and how."""

    path: Path | None = Field(
        default=None, description="Any GGUF file; unset means the registry models below."
    )
    available: list[str] = Field(
        default_factory=lambda: [LARGE.name, SMALL.name],
        description="Registry models the services may run on when `models` is unset: each "
        "service takes the first model of its preference that is listed here (see "
        "`codey model list`). Only the 0.5B keeps a small machine to about 1.4 GB.",
    )
    sha256: str | None = Field(
        default=None, description="Expected SHA-256 of `path`; checked before first use if set."
    )
    cache_dir: Path = Field(
        default_factory=lambda: platformdirs.user_cache_path("codey") / "models",
        description="Where registry models are assembled.",
    )
    context_length: int = Field(default=8192, ge=512, le=32768, description="Engine n_ctx.")
    threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    batch_size: int = Field(default=512, ge=32, le=8192)
    slots: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Sequences the engine decodes together, each keeping its client's prompt "
        "in the KV cache; each holds context_length tokens (12 KiB a token for the 0.5B model).",
    )
    shift_tokens: int = Field(
        default=0,
        ge=0,
        description="When a prompt ends like the slot's last one (the code after the cursor), "
        "reuse that end's KV cells moved to their new positions if it is at least this long, "
        "instead of reading it again (llama.cpp's cache reuse); 0 reads it again. Moving "
        "lends cells between sequences, so it puts every slot in one pool of cells, where "
        "each token's attention scans all of them.",
    )
    max_queued_tokens: int = Field(
        default=262144,
        ge=1,
        description="Work (prompt plus answer tokens) queued or running in the engine before "
        "new requests are refused with 503.",
    )
    family: str | None = Field(
        default=None, description="Fill-in-the-middle template family; unset reads the GGUF."
    )
    extra_buffers: bool = Field(
        default=True,
        description="Let llama.cpp repack the weights for this CPU (its extra buffer types); "
        "always off with a llama.cpp build that compiled in AMX, which crashes there.",
    )
    restart_limit: int = Field(
        default=5, ge=1, description="Engine process deaths within the window before giving up."
    )
    restart_window_seconds: float = Field(default=60.0, gt=0)


class StoreSettings(_Section):
    """Where state that must survive a restart is kept."""

    sqlite_path: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("codey") / "codey.db"
    )


class SamplingDefaults(_Section):
    """How a service samples when the caller does not say: the one place these defaults live,
    read by every dialect and the CLI through the services."""

    max_tokens: int = Field(default=1024, ge=1, description="Tokens of the answer at most.")
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    top_k: int = Field(default=40, ge=0, description="0 keeps every token.")
    priority: int = Field(
        default=1, ge=0, le=9, description="In the embedded engine's queue, lower runs first."
    )
    draft_tokens: int = Field(
        default=0,
        ge=0,
        le=32,
        description="Embedded engine: guess up to this many tokens a step from n-grams already "
        "in the prompt or answer (prompt lookup) and keep those the model agrees with; 0: off.",
    )


class GenerationSettings(SamplingDefaults):
    model: str | None = Field(
        default=None,
        description="Model name; unset means the registry model measured best for this "
        "service among model.available, or the first of `models`.",
    )
    max_tokens: int = Field(default=2048, ge=1)


class ChatSettings(SamplingDefaults):
    model: str | None = Field(
        default=None,
        description="Model name; unset means the registry model measured best for this "
        "service among model.available, or the first of `models`.",
    )


class CompletionSettings(SamplingDefaults):
    model: str | None = Field(
        default=None,
        description="Model name; unset means the registry model measured best for this "
        "service among model.available, or the first of `models`.",
    )
    max_tokens: int = Field(default=64, ge=1, le=512)
    temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Greedy: suggestions are the likeliest code."
    )
    priority: int = Field(
        default=0, ge=0, le=9, description="Ahead of generation and chat: a cursor is waiting."
    )
    postprocess_raw: bool = Field(
        default=False,
        description="Give /v1/completions infill answers the suggestions' post-processing; "
        "off, raw clients get the model's text. A request's `postprocess` field decides too.",
    )
    context_tokens: int = Field(
        default=1024,
        ge=0,
        description="Tokens of other files (repository context) a completion prompt may carry; "
        "the least relevant files are left out first. Cached between keystrokes.",
    )
    # llama.cpp's /infill keeps 3/4 and 1/4 of its 2,048-token batch: a whole file sent by an
    # editor gets a suggestion in seconds, not a 400 or a minute of prompt.
    prefix_tokens: int | None = Field(
        default=1536,
        ge=16,
        description="Embedded engine: tokens of the code before the cursor a completion prompt "
        "keeps at most (the nearest whole lines); unset keeps all that the window holds.",
    )
    suffix_tokens: int | None = Field(
        default=512,
        ge=0,
        description="Embedded engine: tokens of the code after the cursor kept at most (whole "
        "lines from the cursor on); unset keeps all.",
    )


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


EMBEDDED_MODEL = SMALL.name
PREFERENCE: dict[str, tuple[str, ...]] = {
    # measured on 2 cores (docs/benchmarks.md, "Two models"): the 1.5B's code is worth its
    # slower decoding for functions and suggestions; chat answers are long prose, where speed pays
    "generation": (LARGE.name, SMALL.name),
    "completion": (LARGE.name, SMALL.name),
    "chat": (SMALL.name, LARGE.name),
}


class Deployment(_Section):
    """One place a model runs: the embedded engine, an OpenAI-compatible server or Vertex AI."""

    name: str | None = Field(default=None, description="Unique; unset means `<model>-<n>`.")
    backend: str = Field(
        description="llamacpp (the embedded engine), openai, vertex, fake (scripted answers, "
        "for tests), or a backend another package registers."
    )
    url: str | None = Field(
        default=None,
        description="openai: the base URL with its /v1; vertex: an API endpoint override.",
    )
    model_id: str | None = Field(
        default=None,
        description="The upstream's name for the model (openai, vertex); llamacpp: a registry "
        "model, unset meaning model.path or the default one.",
    )
    api_key: SecretStr | None = Field(default=None, description="openai: bearer token.")
    api_key_env: str | None = Field(
        default=None, description="openai: the environment variable that holds the token."
    )
    project: str | None = Field(default=None, description="vertex: Google Cloud project.")
    location: str = Field(default="us-central1", description="vertex: region.")
    credentials_file: Path | None = Field(
        default=None,
        description="vertex: a service-account JSON file; unset means Application Default "
        "Credentials.",
    )
    weight: float = Field(default=1.0, gt=0, description="Share of the load, relative.")
    max_concurrency: int = Field(default=64, ge=1, description="Requests in flight at most.")
    context_length: int | None = Field(
        default=None, ge=256, description="Prompt plus answer tokens; unset asks the engine."
    )
    infill: str = Field(
        default="suffix",
        description="How fill-in-the-middle reaches an openai upstream: 'suffix' (the "
        "completions API's suffix field), a template family such as 'qwen' (the FIM string is "
        "built here and sent as the prompt), or 'chat' (the model is asked for the missing "
        "code in a chat turn).",
    )

    @model_validator(mode="after")
    def _complete(self) -> Deployment:
        if self.backend == "openai" and not self.url:
            raise ValueError("an openai deployment needs `url`, such as http://host:8000/v1")
        if self.backend in ("openai", "vertex") and not self.model_id:
            raise ValueError(f"a {self.backend} deployment needs `model_id`")
        if self.backend == "llamacpp" and self.model_id and self.model_id not in CATALOGUE:
            raise ValueError(
                f"{self.model_id!r} is no registry model; use one of {', '.join(CATALOGUE)}"
            )
        if self.backend == "vertex" and not self.project:
            raise ValueError("a vertex deployment needs `project`")
        if self.api_key_env and self.api_key is None:
            # The one place a credential comes from the environment: named in the config.
            value = os.environ.get(self.api_key_env)
            if value is None:
                raise ValueError(f"the environment variable {self.api_key_env} is not set")
            self.api_key = SecretStr(value)
        return self


def _embedded(parameters: str, model: str) -> Deployment:
    """The deployment of a registry model in its engine process: "embedded-1.5b"."""
    return Deployment(name=f"embedded-{parameters.lower()}", backend="llamacpp", model_id=model)


class ModelRoute(_Section):
    """A model name and the deployments that serve it, tried in turn by the router."""

    deployments: list[Deployment] = Field(min_length=1)
    fallback: str | None = Field(
        default=None, description="Another model to ask when every deployment fails."
    )


class ResilienceSettings(_Section):
    """Timeouts, retries and circuit breakers of calls to deployments."""

    connect_timeout: float = Field(default=5.0, gt=0)
    first_token_timeout: float = Field(
        default=60.0, gt=0, description="Until the first token (streams) or the whole answer."
    )
    total_timeout: float = Field(default=300.0, gt=0, description="One request, all attempts.")
    max_attempts: int = Field(default=3, ge=1, description="Attempts per model, failovers too.")
    backoff_initial: float = Field(default=0.2, ge=0, description="First retry wait, seconds.")
    backoff_max: float = Field(default=5.0, ge=0)
    max_retry_after: float = Field(
        default=30.0, ge=0, description="A longer Retry-After fails over instead of waiting."
    )
    breaker_failures: int = Field(
        default=3, ge=1, description="Consecutive failures that open a deployment's breaker."
    )
    breaker_reset_seconds: float = Field(
        default=10.0, gt=0, description="How long an open breaker waits before one trial call."
    )


Service = Literal["generation", "chat", "completion"]
SERVICES: tuple[Service, ...] = ("generation", "chat", "completion")


class ServiceLimits(_Section):
    """One service's budget for one principal. None means unlimited."""

    requests_per_day: int | None = Field(default=1000, ge=0)
    requests_per_minute: int | None = Field(default=100, ge=1)
    input_chars_per_day: int | None = Field(default=None, ge=0)
    output_chars_per_day: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)


class LimitsSettings(_Section):
    """Quotas per service (defaults of the original design) and how the day is counted."""

    timezone: str = Field(
        default="America/Los_Angeles", description="The daily quota resets at midnight here."
    )
    wait_seconds: float = Field(
        default=10.0, ge=0.0, description="How long a request may wait for a per-minute slot."
    )
    generation: ServiceLimits = Field(
        default_factory=lambda: ServiceLimits(requests_per_day=1000, requests_per_minute=10)
    )
    chat: ServiceLimits = Field(default_factory=ServiceLimits)
    completion: ServiceLimits = Field(default_factory=ServiceLimits)

    def for_service(self, service: Service) -> ServiceLimits:
        return getattr(self, service)


class ApiKey(_Section):
    """A principal: the SHA-256 of its key (never the key), what it may use and its limits."""

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    services: list[Service] = Field(default_factory=lambda: list(SERVICES))
    admin: bool = False
    limits: dict[Service, ServiceLimits] = Field(
        default_factory=dict, description="Overrides of the service limits for this key."
    )


class AuthSettings(_Section):
    keys: list[ApiKey] = Field(
        default_factory=list,
        description="Without keys one anonymous principal is served, on loopback only.",
    )


class CacheSettings(_Section):
    enabled: bool = True
    memory_entries: int = Field(default=1024, ge=0, description="In-memory LRU tier size.")
    persistent: bool = Field(default=True, description="SQLite tier (or Redis in shared mode).")
    ttl_seconds: dict[Service, int] = Field(default_factory=lambda: dict.fromkeys(SERVICES, 3600))
    all_temperatures: bool = Field(
        default=False, description="Also cache sampled answers (temperature > 0)."
    )


class Price(_Section):
    """US dollars per 1,000 billable characters (UTF-8 characters, whitespace not counted)."""

    input_per_1k_chars: float = Field(default=0.00025, ge=0)
    output_per_1k_chars: float = Field(default=0.0005, ge=0)


_BATCH_PRICES: dict[Service, Price] = {
    # Codey's published batch price for code generation, applied to all three services
    s: Price(input_per_1k_chars=0.0002, output_per_1k_chars=0.0004)
    for s in ("generation", "chat", "completion")
}


class PricingSettings(_Section):
    """Vertex AI's published Codey prices by default; per model overrides by service."""

    services: dict[Service, Price] = Field(default_factory=lambda: {s: Price() for s in SERVICES})
    batch: dict[Service, Price] = Field(
        default_factory=lambda: _BATCH_PRICES.copy(), description="Prices of batch requests."
    )
    models: dict[str, dict[Service, Price]] = Field(default_factory=dict)


class BatchQuota(_Section):
    """Batch lines per principal and day, by service, apart from the interactive quota; None
    is unlimited. A line over it fails with 429 in its job's error file."""

    generation: int | None = Field(default=10_000, ge=0)
    chat: int | None = Field(default=10_000, ge=0)
    completion: int | None = Field(default=10_000, ge=0)

    def for_service(self, service: Service) -> int | None:
        quota: int | None = getattr(self, service)
        return quota


class BatchSettings(_Section):
    """Batch jobs: many requests in a file, run behind interactive traffic at batch prices."""

    requests_per_day: BatchQuota = Field(default_factory=BatchQuota)
    concurrency: int = Field(
        default=8, ge=1, le=64, description="Lines of all jobs in flight at once."
    )
    max_file_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, description="Largest input file accepted."
    )
    max_lines: int = Field(default=50_000, ge=1, description="Most requests in one job.")
    line_attempts: int = Field(
        default=3, ge=1, description="Tries of a line that fails inside codey (5xx)."
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, description="How often the runner looks for new or resumed jobs."
    )
    lease_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Shared mode: a line a replica took is another's to run after this long "
        "without an answer (its replica died); longer than `resilience.total_timeout`.",
    )
    folder: Path = Field(
        default_factory=lambda: platformdirs.user_data_path("codey") / "batch",
        description="Vertex batch prediction jobs read their input files from and write their "
        "output under this folder (there is no bucket); paths outside it are refused.",
    )


class Settings(BaseSettings):
    """Everything configurable in codey."""

    model_config = SettingsConfigDict(
        env_prefix="CODEY_", env_nested_delimiter="__", extra="forbid"
    )

    model: ModelSettings = Field(default_factory=ModelSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    redis_url: str | None = Field(
        default=None,
        description="Shared mode: quotas, rate limits, cache and batch jobs live in Redis.",
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    models: dict[str, ModelRoute] = Field(
        default_factory=dict,
        description="Model names and their deployments; unset means the embedded model only.",
    )
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)

    @model_validator(mode="after")
    def _check_routes(self) -> Settings:
        if not self.models:
            self.models = self._embedded_routes()
        names = set(self.models)
        for service in SERVICES:
            wanted = getattr(self, service).model
            if wanted is not None and wanted not in names:
                raise ValueError(f"{service}.model is {wanted!r}, not one of {sorted(names)}")
        seen: set[str] = set()
        for model, route in self.models.items():
            if route.fallback is not None and route.fallback not in names:
                raise ValueError(f"models.{model}.fallback names no configured model")
            for index, deployment in enumerate(route.deployments, 1):
                deployment.name = deployment.name or f"{model}-{index}"
                if deployment.name in seen:
                    raise ValueError(f"two deployments are named {deployment.name!r}")
                seen.add(deployment.name)
            chain, current = [model], route.fallback
            while current is not None:
                if current in chain:
                    raise ValueError(f"the fallbacks of {model!r} go round in a circle")
                chain.append(current)
                current = self.models[current].fallback
        return self

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

    def _embedded_routes(self) -> dict[str, ModelRoute]:
        """The embedded engine's models: the configured file, or the registry models that
        some service runs on (a model no service picks is not loaded)."""
        if self.model.path is not None:
            embedded = Deployment(name="embedded", backend="llamacpp")
            return {self.model.path.stem: ModelRoute(deployments=[embedded])}
        unknown = [name for name in self.model.available if name not in CATALOGUE]
        if unknown or not self.model.available:
            raise ValueError(
                f"model.available must list registry models ({', '.join(CATALOGUE)}), "
                f"not {unknown or 'nothing'}"
            )
        wanted: list[str] = []
        for service in SERVICES:
            section = self.defaults_for(service)
            section.model = section.model or self._preferred(service)
            if section.model in CATALOGUE and section.model not in wanted:
                wanted.append(section.model)
        return {
            name: ModelRoute(deployments=[_embedded(CATALOGUE[name].parameters, name)])
            for name in wanted
        }

    def _preferred(self, service: Service) -> str:
        available = self.model.available
        return next((m for m in PREFERENCE[service] if m in available), available[0])

    def registry_models(self) -> list[str]:
        """The registry models that llamacpp deployments run (none when model.path is set)."""
        if self.model.path is not None:
            return []
        names = [
            d.model_id or SMALL.name
            for route in self.models.values()
            for d in route.deployments
            if d.backend == "llamacpp"
        ]
        return list(dict.fromkeys(names))

    def model_for(self, service: Service) -> str:
        """The model name a service runs on: its own setting (with the embedded models, the
        one measured best for it), else the first model."""
        return self.defaults_for(service).model or next(iter(self.models))

    def defaults_for(
        self, service: Service
    ) -> GenerationSettings | ChatSettings | CompletionSettings:
        """A service's section: its model and its sampling defaults."""
        section: GenerationSettings | ChatSettings | CompletionSettings = getattr(self, service)
        return section


def default_config_file() -> Path:
    """codey's own config file, read when no other is given and written by `codey model use`."""
    return platformdirs.user_config_path("codey") / "codey.toml"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
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
