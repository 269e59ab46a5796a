"""Loading a spec: YAML -> overrides -> version check -> strict models, errors located."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from dlx.errors import Problem, SpecError, did_you_mean, received
from dlx.spec.component import ComponentError
from dlx.spec.document import (
    Document,
    PathKey,
    apply_overrides,
    parse_document,
    read_document,
)
from dlx.spec.schema import SPEC_VERSION, Spec


@dataclass
class LoadedSpec:
    """A validated spec and the document it came from (for locating later errors)."""

    spec: Spec
    document: Document

    @property
    def name(self) -> str:
        return self.spec.name or self.document.path.stem

    @property
    def base_dir(self) -> Path:
        return self.document.base_dir

    def error(self, path: PathKey, message: str, *, key: bool = False) -> SpecError:
        return self.document.error(path, message, key=key)


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Read, override and validate a spec file.

    Args:
        path: the spec's YAML file.
        overrides: `dotted.path=value` strings, as given to `--set`.

    Returns:
        The validated spec with its document.

    Raises:
        SpecError: every problem of the file at once, each with its file, line and column.
    """
    return validate_document(read_document(path), overrides)


def load_spec_text(
    text: str, path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> LoadedSpec:
    """Validate a spec given as text, as if read from `path` (which need not exist).

    Relative paths in the spec resolve against `path`'s folder, as for a file: this is how a
    spec logged by a run is trained again (`dlx reproduce`).
    """
    return validate_document(parse_document(text, Path(path)), overrides)


def validate_document(doc: Document, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Apply overrides to a read document, check its version, and validate it strictly."""
    apply_overrides(doc, list(overrides))
    if not isinstance(doc.data, dict):
        raise doc.error((), f"expected a mapping of sections. Received: {received(doc.data)}")
    version = doc.data.get("version")
    # `true` equals 1 in Python, not in JSON Schema: a version is a number.
    if "version" in doc.data and (isinstance(version, bool) or version != SPEC_VERSION):
        raise doc.error(
            ("version",),
            f"unsupported spec version. Expected {SPEC_VERSION}. Received: {received(version)}",
        )
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(_problems(doc, exc)) from None
    return LoadedSpec(spec=spec, document=doc)


def _problems(doc: Document, exc: ValidationError) -> list[Problem]:
    found: list[tuple[PathKey, str, bool, str]] = []
    for error in exc.errors():
        path, missing = _data_path(doc.data, error["loc"], error["type"])
        on_key = error["type"] == "extra_forbidden"
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ComponentError):
            path, on_key = (*path, *cause.path), cause.on_key
        found.append((path, _message(error, path, missing), on_key, error["type"]))
    problems: dict[tuple[str, str], Problem] = {}
    for path, message, on_key, kind in found:
        # A value of a union (`metrics`: a list or a mapping) fails each member: the member that
        # looked inside it says more than the one that refused its type.
        if kind in _EXPECTED and any(other[: len(path)] == path != other for other, *_ in found):
            continue
        problem = doc.problem(path, message, key=on_key)
        problems.setdefault((problem.key, message), problem)
    return list(problems.values())


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[PathKey, str | None]:
    """Map pydantic's `loc` onto the data, skipping the names of union members it adds."""
    path: list[Any] = []
    here = data
    for i, part in enumerate(loc):
        if isinstance(here, dict) and part in here:
            here = here[part]
            path.append(part)
        elif isinstance(here, dict) and str(part).isdigit() and int(part) in here:
            here = here[int(part)]
            path.append(int(part))
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
            path.append(part)
        elif kind == "missing" and i == len(loc) - 1:
            return tuple(path), str(part)
    return tuple(path), None


_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def _message(error: ErrorDetails, path: PathKey, missing: str | None) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "missing":
        return f"missing required key '{missing}'"
    if kind == "extra_forbidden":
        allowed = _fields_at(Spec, path[:-1])
        return "unknown key" + did_you_mean(str(path[-1]), allowed)
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        hint = did_you_mean(str(value), [e.strip(" '") for e in expected.split(",")])
        return (
            f"expected one of {expected.replace(' or ', ', ')}. Received: {received(value)}{hint}"
        )
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}. Received: {received(value)}{_quoted_hint(kind, value)}"
    message = error["msg"]
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    message = message.replace("Input should be", "expected a value").replace(
        "expected a value a ", "expected a "
    )
    return f"{message}. Received: {received(value)}"


def _quoted_hint(kind: str, value: Any) -> str:
    """Say so when a number or true/false was written in quotes (YAML then reads a string)."""
    if not isinstance(value, str) or len(value) > 100:
        return ""
    readers: dict[str, Callable[[str], object]] = {
        "int_": int,
        "float_": float,
        "bool_": _read_bool,
    }
    read = next((r for prefix, r in readers.items() if kind.startswith(prefix)), None)
    try:
        read(value.strip()) if read else None
    except ValueError:
        return ""
    return " (a string: remove the quotes)" if read else ""


def _read_bool(text: str) -> bool:
    if text.lower() in ("true", "false", "yes", "no", "on", "off"):
        return text.lower() in ("true", "yes", "on")
    raise ValueError(text)


def _fields_at(model: type[BaseModel], path: PathKey) -> list[str]:
    """The keys a spec section allows at `path` (for did-you-mean on unknown keys)."""
    annotation: Any = model
    for part in path:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    models = [t for t in _members(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
    return list(models[0].model_fields) if models else []


def _members(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _step(annotation: Any, part: Any) -> Any:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if part in member.model_fields:
                return member.model_fields[part].annotation
            continue
        origin = typing.get_origin(member)
        if origin is list and isinstance(part, int):
            return typing.get_args(member)[0]
        if origin is dict:
            return typing.get_args(member)[1]
    return None


__all__ = ["LoadedSpec", "load_spec", "load_spec_text", "validate_document"]
