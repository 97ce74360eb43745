"""Generation on the scripted fake (tests/fake_script.py)."""

from __future__ import annotations

import ast

import pytest

from codey.backends.base import Message
from codey.errors import InvalidRequest
from codey.runtime import Runtime
from codey.services.generation import GenerationRequest, build_messages

PRIME = GenerationRequest(
    "a function that tells whether a number is prime", max_tokens=160, temperature=0
)


def test_the_prompt_carries_language_context_and_requirements() -> None:
    request = GenerationRequest(
        "parse a config file",
        language="rust",
        context="struct Config { name: String }",
        requirements=("no unwrap", "  ", "return Result"),
    )
    system, user = build_messages(request)
    assert system.role == "system" and "rust" in system.content
    assert user == Message(
        "user",
        "parse a config file\n\nContext:\n```\nstruct Config { name: String }\n```\n\n"
        "Requirements:\n- no unwrap\n- return Result",
    )


async def test_an_empty_prompt_is_refused(fake_runtime: Runtime) -> None:
    with pytest.raises(InvalidRequest, match="empty"):
        await fake_runtime.generation.generate(GenerationRequest("   "))


async def test_generates_a_python_function_that_parses(fake_runtime: Runtime) -> None:
    result = await fake_runtime.generation.generate(PRIME)
    tree = ast.parse(result.code)
    assert any(isinstance(node, ast.FunctionDef) for node in tree.body)
    assert "def is_prime(" in result.code  # the scripted answer to this prompt
    assert result.syntax.valid is True
    assert "```" not in result.code
    assert 0 < result.confidence <= 1
    assert result.prompt_tokens > 20 and result.completion_tokens > 10
    assert result.elapsed_ms > 0


async def test_same_request_same_code_same_confidence(fake_runtime: Runtime) -> None:
    first = await fake_runtime.generation.generate(PRIME)
    second = await fake_runtime.generation.generate(PRIME)
    assert first.code == second.code
    assert first.confidence == second.confidence


async def test_confidence_follows_the_models_certainty(fake_runtime: Runtime) -> None:
    # A fully specified one-liner leaves the model little choice; an open-ended request
    # with sampling at a high temperature leaves it a lot.
    certain = await fake_runtime.generation.generate(
        GenerationRequest(
            "Write exactly this Python line and nothing else: import os",
            max_tokens=16,
            temperature=0,
        )
    )
    uncertain = await fake_runtime.generation.generate(
        GenerationRequest(
            "Invent an unusual, creative Python function of your choice",
            max_tokens=48,
            temperature=1.5,
            seed=7,
        )
    )
    assert certain.confidence > 0.9
    assert uncertain.confidence < certain.confidence - 0.2


async def test_other_languages_are_extracted_and_checked(fake_runtime: Runtime) -> None:
    result = await fake_runtime.generation.generate(
        GenerationRequest(
            "a C function int add(int a, int b) that returns the sum",
            language="c",
            max_tokens=80,
            temperature=0,
        )
    )
    assert "add" in result.code
    assert "```" not in result.code
    assert result.syntax.checker in ("gcc", None)
