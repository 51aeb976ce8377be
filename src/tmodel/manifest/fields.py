"""The field types every manifest model shares: strict, closed models; sizes in 0..2^63-1; integers in
msgpack's whole range (SPEC.md §4)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field, ValidationError

from .encoding import INT64_MAX, INT_MAX, INT_MIN

#: strict (no coercion: a float or bool is never an int), closed (unknown fields are an error), immutable
STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)
Size = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]
Int = Annotated[int, Field(strict=True, ge=INT_MIN, le=INT_MAX)]


def first_error(exc: ValidationError) -> str:
    """A pydantic validation failure as one line: where (dotted location) and what, for the first error."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else str(err["msg"])
