"""The JSON Schema of the spec language, for editors (`dlx schema`, specs/dlx.schema.json).

The pydantic models of `dlx.spec.schema` give its sections. What they leave to the packages
above `dlx.spec` is passed in by the caller (`dlx.api.schema`), from the registries `dlx
validate` checks a spec against: the data sources a spec may name, each with its arguments
(`dlx.data.sources.SOURCES`), and the pruners of a sweep (`dlx.sweep.space.PRUNER_ARGUMENTS`).
The model kinds (`MODEL_KINDS`) say which `model` keys each kind needs and owns.

What the schema refuses, dlx refuses too, so that an editor never marks a spec that dlx takes;
dlx refuses more (a file that is not there, a layer Keras does not have, `low < high`), which
JSON Schema cannot say or cannot know. tests/spec/test_schema_agreement.py holds them to it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from dlx.spec.component import normalize_name
from dlx.spec.schema import DEFINED_IN_JSON_SCHEMA, MODEL_KINDS, Model, Spec

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_P = inspect.Parameter


@dataclass(frozen=True)
class ComponentArguments:
    """The arguments of a component, as a spec writes them (docs/spec.md section 2):
    `{name: value}` gives the first one, `{name: {key: value, ...}}` any by name, and `name`
    alone or `{name: null}` none.

    Attributes:
        parameters: the parameters, their annotations evaluated: the types the schema gives.
        summary: what the component is, in one line.
        descriptions: each parameter's description, by name.
    """

    parameters: tuple[inspect.Parameter, ...]
    summary: str = ""
    descriptions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, function: Callable[..., Any], skip: int = 0) -> ComponentArguments:
        """The arguments of `function` after its first `skip` parameters (those its caller
        fills), described by its docstring: its first line, and its `Args:` section."""
        parameters = inspect.signature(function, eval_str=True).parameters.values()
        doc = inspect.getdoc(function) or ""
        return cls(tuple(parameters)[skip:], doc.partition("\n")[0], _described(doc))


def json_schema(
    sources: Mapping[str, ComponentArguments], pruners: Mapping[str, Collection[str]]
) -> dict[str, Any]:
    """The JSON Schema of the spec language.

    Args:
        sources: every data source a spec may name, by name, with its arguments.
        pruners: every pruner `sweep.prune` may name, with the names of its arguments.

    Returns:
        The schema (draft 2020-12), as `dlx schema` prints it.
    """
    schema = _filled(Spec.model_json_schema())
    definitions = schema["$defs"]
    definitions["Model"]["allOf"] = _kinds_json_schema()
    _define_component(
        definitions,
        "DataSource",
        "A data source: {name: arguments}, or {name: its first argument}.",
        {name: _arguments_json_schema(arguments) for name, arguments in sources.items()},
        alone=[name for name, arguments in sources.items() if not _required(arguments)],
        any_spelling=True,
    )
    _define_component(
        definitions,
        "Pruner",
        "A pruner: its name, or {name: {argument: value, ...}}.",
        {
            name: {
                "type": ["object", "null"],
                "properties": {argument: {} for argument in arguments},
                "additionalProperties": False,
            }
            for name, arguments in pruners.items()
        },
        alone=list(pruners),
        any_spelling=False,
    )
    schema["$schema"] = DIALECT
    schema["title"] = "dlx spec, version 1"
    return schema


def _filled(node: Any) -> Any:
    """The models' JSON Schema, each placeholder (`defined_in_json_schema`) made a `$ref`."""
    if isinstance(node, list):
        return [_filled(item) for item in node]
    if not isinstance(node, dict):
        return node
    filled = {key: _filled(value) for key, value in node.items()}
    if (name := filled.pop(DEFINED_IN_JSON_SCHEMA, None)) is not None:
        filled["$ref"] = f"#/$defs/{name}"
    return filled


def _kinds_json_schema() -> list[dict[str, Any]]:
    """What `Model._parts_of_kind` checks: each kind's `model` has the keys it needs (not
    null), and no other kind's own keys (absent, or null)."""
    default = Model.model_fields["kind"].default
    owned = {key for kind in MODEL_KINDS.values() for key in kind.fields}
    not_null = {"not": {"type": "null"}}
    rules = []
    for name, kind in MODEL_KINDS.items():
        this_kind: dict[str, Any] = {"properties": {"kind": {"const": name}}}
        if name != default:  # a model without `kind` is of the default kind
            this_kind["required"] = ["kind"]
        then = {
            "required": list(kind.needs),
            "properties": {
                **{key: {"type": "null"} for key in sorted(owned - set(kind.fields))},
                **{key: not_null for key in kind.needs},
            },
        }
        rules.append({"if": this_kind, "then": then})
    return rules


def _define_component(
    definitions: dict[str, Any],
    kind: str,
    description: str,
    values: dict[str, dict[str, Any]],
    *,
    alone: list[str],
    any_spelling: bool,
) -> None:
    """Define `kind`, a component of one of the names of `values`: `{name: value}`, each value
    as `values` says (defined as `kind.name`), or the name alone for the names in `alone`.

    With `any_spelling`, names are matched as dlx matches them (`normalize_name`): without
    regard to case, `_` or `-`; the properties give their usual spelling, for completion.
    """
    refs = {name: {"$ref": f"#/$defs/{kind}.{name}"} for name in values}
    mapping: dict[str, Any] = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "properties": refs,
        "additionalProperties": False,
    }
    name_alone: dict[str, Any] = {"enum": alone}
    if any_spelling:
        mapping["patternProperties"] = {_spellings(name): refs[name] for name in values}
        name_alone = {"type": "string", "pattern": "|".join(_spellings(name) for name in alone)}
    definitions[kind] = {
        "description": description,
        "anyOf": [name_alone, mapping] if alone else [mapping],
    }
    definitions.update({f"{kind}.{name}": value for name, value in values.items()})


def _spellings(name: str) -> str:
    """A pattern of every spelling of `name` that `normalize_name` takes for it."""
    letters = (f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in normalize_name(name))
    return "^[-_]*" + "".join(f"{letter}[-_]*" for letter in letters) + "$"


def _required(arguments: ComponentArguments) -> list[str]:
    return [
        p.name
        for p in arguments.parameters
        if p.default is p.empty and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
    ]


def _arguments_json_schema(arguments: ComponentArguments) -> dict[str, Any]:
    """A component's value: its arguments by name (a mapping); its first argument alone, when
    the others have defaults; nothing (null), when all have."""
    parameters = arguments.parameters
    extra = next((p for p in parameters if p.kind is _P.VAR_KEYWORD), None)
    by_name: dict[str, Any] = {
        "type": "object",
        "properties": {
            p.name: _parameter_json_schema(p, arguments)
            for p in parameters
            if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)
        },
        # Keyword arguments passed on (to a loader, or to the user's function) are its own.
        "additionalProperties": (
            False if extra is None else {"description": arguments.descriptions.get(extra.name, "")}
        ),
    }
    required = _required(arguments)
    if required:
        by_name["required"] = required
    forms = [by_name]
    positional = [p for p in parameters if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
    if positional and set(required) <= {positional[0].name}:
        forms.insert(0, _parameter_json_schema(positional[0], arguments))
    if not required:
        forms.append({"type": "null"})
    return {"description": arguments.summary, "anyOf": forms}


def _parameter_json_schema(
    parameter: inspect.Parameter, arguments: ComponentArguments
) -> dict[str, Any]:
    """One argument: its type, as its annotation says; its description and default."""
    if parameter.annotation is parameter.empty:
        schema: dict[str, Any] = {}
    else:
        schema = TypeAdapter(parameter.annotation).json_schema()
    if parameter.name in arguments.descriptions:
        schema["description"] = arguments.descriptions[parameter.name]
    if parameter.default is not parameter.empty:
        schema["default"] = TypeAdapter(Any).dump_python(parameter.default, mode="json")
    return schema


_ARGUMENT = re.compile(r"^    \*{0,2}(\w+): (.*)$")


def _described(doc: str) -> dict[str, str]:
    """Each argument's description, from the `Args:` section of a Google-style docstring."""
    descriptions: dict[str, str] = {}
    name = None
    for line in doc.partition("\nArgs:\n")[2].splitlines():
        if match := _ARGUMENT.match(line):
            name, descriptions[match[1]] = match[1], match[2]
        elif name is not None and line.startswith(" " * 8):
            descriptions[name] += " " + line.strip()
        else:
            break
    return descriptions
