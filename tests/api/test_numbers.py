"""Numbers in request bodies as JSON Schema reads them."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from codey.api.app import create_app
from codey.api.numbers import Integer, Number
from codey.config import Settings

INTEGER: TypeAdapter[int] = TypeAdapter(Integer)
NUMBER: TypeAdapter[float] = TypeAdapter(Number)


@pytest.mark.parametrize(("given", "taken"), [(3, 3), (3.0, 3), (-0.0, 0), (1e3, 1000)])
def test_an_integer_may_be_written_as_a_float_without_a_fraction(given: object, taken: int) -> None:
    value = INTEGER.validate_python(given)
    assert value == taken and type(value) is int


@pytest.mark.parametrize("given", [1.5, True, False, "2", None, float("inf"), float("nan")])
def test_an_integer_is_no_fraction_boolean_or_string(given: object) -> None:
    with pytest.raises(ValidationError):
        INTEGER.validate_python(given)


@pytest.mark.parametrize("given", [0.5, 2, 1e-3])
def test_a_number_is_an_integer_or_a_float(given: object) -> None:
    assert NUMBER.validate_python(given) == given


@pytest.mark.parametrize("given", ["0.5", True, None])
def test_a_number_is_no_string_or_boolean(given: object) -> None:
    with pytest.raises(ValidationError):
        NUMBER.validate_python(given)


def test_the_schema_says_integer_and_number() -> None:
    assert INTEGER.json_schema() == {"type": "integer"}
    assert NUMBER.json_schema() == {"type": "number"}


def test_bounds_reach_the_document_as_json_schema_keywords() -> None:
    """A bound written after `WHOLE` would be documented as "ge", which no validator reads."""
    document = json.dumps(create_app(Settings()).openapi())
    for keyword in ("ge", "le", "gt", "lt"):
        assert f'"{keyword}":' not in document
    assert '"minimum":' in document and '"maximum":' in document
