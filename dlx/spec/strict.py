"""The base of every spec section (`Strict`) and the spec's integers (`Integer`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def whole_number_as_int(value: Any) -> Any:
    """A float that is a whole number (`3.0`) as the integer it is; anything else as it is.

    JSON Schema counts `3.0` as an integer, and so do editors: where a spec takes an integer,
    dlx takes it too, so that an editor and dlx agree. `2.5` stays a float, for the integer
    check to refuse.
    """
    if type(value) is float and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(whole_number_as_int)]
"""An integer of the spec: `3`, or `3.0` (see `whole_number_as_int`); never `true` or `"3"`."""


class Strict(BaseModel):
    """Base of every spec section: unknown keys are errors, never silently dropped.

    Types are strict, as in the JSON Schema editors check a spec with: `epochs: "20"` is a
    string, not an integer (an integer is still a number, `learning_rate: 1`, and a whole
    number an integer, `epochs: 3.0`: see `Integer`).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=False)
