"""Numbers in request bodies as JSON Schema reads them: an integer is any number without a
fraction, so 3.0 is the integer 3 (Google's clients write integers so); booleans and numbers
written as strings are neither integers nor numbers."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, StrictFloat, StrictInt


def _whole(value: object) -> object:
    """3.0 -> 3; anything else is left for the integer validator to judge."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


WHOLE = BeforeValidator(_whole)
"""Takes 3.0 as 3. An integer's bounds go before it, `Annotated[StrictInt, Field(ge=1), WHOLE]`:
pydantic writes bounds given after a validator into the schema as "ge", not "minimum"."""

Integer = Annotated[StrictInt, WHOLE]
"""An integer, also when written as 3.0; not 1.5, "2" or true. The schema says "integer"."""

Number = StrictFloat
"""A number, integral or not; not "0.5" or true."""
