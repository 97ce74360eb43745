from __future__ import annotations

import re
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


EXAMPLES = Path(__file__).parent.parent / "examples"


SMALL, LARGE = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"


def test_without_models_each_service_runs_on_the_registry_model_measured_best_for_it() -> None:
    settings = load_settings()
    assert {s: settings.model_for(s) for s in ("generation", "chat", "completion")} == {
        "generation": LARGE,
        "chat": SMALL,
        "completion": LARGE,
    }
    assert list(settings.models) == [LARGE, SMALL]
    deployments = [d for route in settings.models.values() for d in route.deployments]
    assert [(d.backend, d.model_id, d.name) for d in deployments] == [
        ("llamacpp", LARGE, "embedded-1.5b"),
        ("llamacpp", SMALL, "embedded-0.5b"),
    ]


def test_a_small_machine_keeps_every_service_on_the_small_model() -> None:
    settings = load_settings(model={"available": [SMALL]})
    assert list(settings.models) == [SMALL]
    assert {settings.model_for(s) for s in ("generation", "chat", "completion")} == {SMALL}


def test_a_service_named_model_is_loaded_even_when_not_listed() -> None:
    settings = load_settings(model={"available": [SMALL]}, chat={"model": LARGE})
    assert list(settings.models) == [SMALL, LARGE]
    assert settings.model_for("chat") == LARGE


def test_a_configured_file_serves_every_service() -> None:
    settings = load_settings(model={"path": "/models/mine.gguf"})
    assert list(settings.models) == ["mine"]
    assert settings.models["mine"].deployments[0].name == "embedded"
    assert {settings.model_for(s) for s in ("generation", "chat", "completion")} == {"mine"}


def test_unknown_registry_models_are_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match=r"model\.available must list registry models"):
        load_settings(model={"available": ["gpt-5"]})
    deployment = {"backend": "llamacpp", "model_id": "gpt-5"}
    with pytest.raises(ValueError, match=re.escape(f"no registry model; use one of {SMALL}")):
        load_settings(models={"m": {"deployments": [deployment]}})


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_config_loads(example: Path) -> None:
    settings = load_settings(example)
    for model, route in settings.models.items():
        assert route.deployments, model
        assert all(d.name for d in route.deployments)


def test_the_balanced_example_routes_as_it_says() -> None:
    settings = load_settings(EXAMPLES / "balanced-with-fallback.toml")
    assert settings.model_for("chat") == "coder"
    assert settings.model_for("completion") == "coder-local"
    coder = settings.models["coder"]
    assert coder.fallback == "gemini"
    assert [(d.name, d.weight) for d in coder.deployments] == [("gpu-a", 2.0), ("gpu-b", 1.0)]


@pytest.mark.parametrize(
    ("toml", "complaint"),
    [
        ('[chat]\nmodel = "nope"\n', "chat.model"),
        (
            '[models.a]\nfallback = "b"\n[[models.a.deployments]]\nbackend = "llamacpp"\n'
            '[models.b]\nfallback = "a"\n[[models.b.deployments]]\nbackend = "llamacpp"\n',
            "circle",
        ),
        ('[models.a]\n[[models.a.deployments]]\nbackend = "openai"\nmodel_id = "x"\n', "url"),
        ('[models.a]\n[[models.a.deployments]]\nbackend = "vertex"\nmodel_id = "g"\n', "project"),
        (
            '[models.a]\n[[models.a.deployments]]\nbackend = "openai"\nurl = "http://h/v1"\n'
            'model_id = "x"\napi_key_env = "CODEY_TEST_UNSET_KEY"\n',
            "CODEY_TEST_UNSET_KEY",
        ),
        (
            '[models.a]\n[[models.a.deployments]]\nname = "d"\nbackend = "llamacpp"\n'
            '[[models.a.deployments]]\nname = "d"\nbackend = "llamacpp"\n',
            "two deployments",
        ),
    ],
)
def test_routing_mistakes_are_config_errors(tmp_path: Path, toml: str, complaint: str) -> None:
    path = tmp_path / "codey.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=complaint):
        load_settings(path)


def test_an_api_key_comes_from_the_variable_the_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "s3cret")
    path = tmp_path / "codey.toml"
    path.write_text(
        '[models.a]\n[[models.a.deployments]]\nbackend = "openai"\nurl = "http://h/v1"\n'
        'model_id = "x"\napi_key_env = "UPSTREAM_TOKEN"\n'
    )
    (deployment,) = load_settings(path).models["a"].deployments
    assert deployment.api_key is not None and deployment.api_key.get_secret_value() == "s3cret"
    assert deployment.name == "a-1"
