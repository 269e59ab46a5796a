"""Entries, blocks and graphs -> Keras functional models (docs/spec.md sections 4.1-4.4).

A list of entries is a *scope*. Each entry takes the previous entry's output unless its
`inputs` names others; named entries may be referred to from anywhere in their scope, in any
order, so any directed acyclic graph can be written. Blocks, `residual` and `parallel` open
scopes of their own.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from dlx.build.resolver import LAYER, Resolver, catalogue, keras_message
from dlx.errors import SpecError, did_you_mean, received
from dlx.spec import PathKey, normalize_name
from dlx.spec.schema import Block

# Keys inside an entry's arguments that belong to dlx, not to the Keras layer.
DLX_KEYS = ("name", "inputs", "repeat")
SCOPE_INPUT = "$input"
_MERGES = {"residual": "add", "parallel": "concatenate"}
_INTERPOLATION = re.compile(r"\$\{(\w+)\}")


@dataclass
class Entry:
    """One entry of a scope, split into what dlx reads and what goes to Keras."""

    index: int
    path: PathKey
    kind: str
    args: list[Any]
    kwargs: dict[str, Any]
    name: str | None = None
    inputs: list[str] | None = None
    repeat: int = 1

    @property
    def args_path(self) -> PathKey:
        return (*self.path, self.kind)


@dataclass
class Scope:
    """Entries being connected, their outputs so far, and the input the scope was opened with."""

    entries: list[Entry]
    resolver: Resolver
    scope_input: Any = None
    prefix: str = ""
    outputs: dict[int, Any] = field(default_factory=dict)
    visiting: set[int] = field(default_factory=set)
    by_name: dict[str, Entry] = field(default_factory=dict)


class GraphBuilder:
    """Builds tensors from entries; used once per model.

    Args:
        resolver: resolves component names and locates errors.
        blocks: the spec's blocks by name.
    """

    def __init__(self, resolver: Resolver, blocks: dict[str, Block]) -> None:
        self.resolver = resolver
        self.blocks = blocks
        self.inputs: list[Any] = []
        self.block_uses: dict[str, int] = {}
        self.block_stack: list[str] = []
        self.keras_names: set[str] = set()
        self._check_blocks()

    def _check_blocks(self) -> None:
        layers = catalogue(LAYER)
        for name in self.blocks:
            if normalize_name(name) in layers or name in _MERGES:
                keras_name = layers.get(normalize_name(name), (name,))[0]
                raise self.resolver.error(
                    ("model", "blocks", name),
                    f"the block '{name}' shadows the layer '{keras_name}'; give it another name",
                    key=True,
                )

    def connect(
        self, entries: list[Any], path: PathKey, *, scope_input: Any = None, prefix: str = ""
    ) -> tuple[Any, dict[str, Any]]:
        """Connect a list of entries.

        Returns:
            The last entry's output, and the outputs of every named entry.
        """
        if not entries:
            if scope_input is None:
                raise self.resolver.error(path, "expected at least one entry")
            return scope_input, {}
        scope = Scope(
            entries=[self._entry(i, value, (*path, i)) for i, value in enumerate(entries)],
            resolver=self.resolver,
            scope_input=scope_input,
            prefix=prefix,
        )
        for entry in scope.entries:
            if entry.name is None:
                continue
            if entry.name in scope.by_name or entry.name == SCOPE_INPUT:
                raise self.resolver.error(
                    (*entry.args_path, "name"), f"the name '{entry.name}' is already used"
                )
            scope.by_name[entry.name] = entry
        for entry in scope.entries:
            self._output(scope, entry)
        named = {name: scope.outputs[entry.index] for name, entry in scope.by_name.items()}
        return scope.outputs[scope.entries[-1].index], named

    def _entry(self, index: int, value: Any, path: PathKey) -> Entry:
        kind, args, kwargs = self.resolver.split(value, path, "layer")
        entry = Entry(index=index, path=path, kind=kind, args=args, kwargs=kwargs)
        args_path = entry.args_path
        name = kwargs.pop("name", None)
        if name is not None and not isinstance(name, str):
            raise self.resolver.error(
                (*args_path, "name"), f"expected a name. Received: {received(name)}"
            )
        entry.name = name
        inputs = kwargs.pop("inputs", None)
        if isinstance(inputs, str):
            inputs = [inputs]
        if inputs is not None and (
            not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs)
        ):
            raise self.resolver.error(
                (*args_path, "inputs"),
                f"expected a name or a list of names. Received: {received(inputs)}",
            )
        entry.inputs = inputs
        repeat = kwargs.pop("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise self.resolver.error(
                (*args_path, "repeat"), f"expected a positive integer. Received: {received(repeat)}"
            )
        entry.repeat = repeat
        return entry

    def _output(self, scope: Scope, entry: Entry) -> Any:
        if entry.index in scope.outputs:
            return scope.outputs[entry.index]
        if entry.index in scope.visiting:
            raise self.resolver.error(
                (*entry.args_path, "inputs"),
                f"a cycle: '{entry.name or entry.kind}' depends on its own output",
            )
        scope.visiting.add(entry.index)
        inputs = self._inputs(scope, entry)
        scope.outputs[entry.index] = self._apply(scope, entry, inputs)
        scope.visiting.discard(entry.index)
        return scope.outputs[entry.index]

    def _inputs(self, scope: Scope, entry: Entry) -> Any:
        if normalize_name(entry.kind) == "input":
            return None
        if entry.inputs is None:
            if entry.index > 0:
                return self._output(scope, scope.entries[entry.index - 1])
            if scope.scope_input is not None:
                return scope.scope_input
            raise self.resolver.error(
                entry.path,
                "the first entry has no input: start with an input entry, e.g. "
                "input: {shape: [28, 28, 1]}",
                key=True,
            )
        tensors = []
        for i, name in enumerate(entry.inputs):
            where = (*entry.args_path, "inputs") + ((i,) if len(entry.inputs) > 1 else ())
            if name == SCOPE_INPUT:
                if scope.scope_input is None:
                    raise self.resolver.error(where, "$input is only defined inside a block")
                tensors.append(scope.scope_input)
            elif name in scope.by_name:
                tensors.append(self._output(scope, scope.by_name[name]))
            else:
                hint = did_you_mean(name, list(scope.by_name)) or (
                    f"; named entries here: {', '.join(scope.by_name) or 'none'}"
                )
                raise self.resolver.error(where, f"no entry named '{name}'{hint}")
        return tensors[0] if len(entry.inputs) == 1 else tensors

    def _apply(self, scope: Scope, entry: Entry, x: Any) -> Any:
        kind = normalize_name(entry.kind)
        if kind == "input":
            if entry.repeat != 1:
                raise self.resolver.error((*entry.args_path, "repeat"), "an input cannot repeat")
            return self._input(scope, entry)
        for i in range(entry.repeat):
            name = self._keras_name(scope, entry, i)
            if entry.kind in self.blocks:
                x = self._block(entry, x, name)
            elif kind in _MERGES:
                x = self._structure(scope, entry, x, name)
            else:
                x = self._layer(entry, x, name)
        return x

    def _keras_name(self, scope: Scope, entry: Entry, repetition: int) -> str | None:
        if entry.name is None:
            return None
        name = scope.prefix + entry.name
        if entry.repeat > 1:
            name = f"{name}_{repetition + 1}"
        if name in self.keras_names:
            raise self.resolver.error(
                (*entry.args_path, "name"), f"the layer name '{name}' is already used in the model"
            )
        self.keras_names.add(name)
        return name

    def _input(self, scope: Scope, entry: Entry) -> Any:
        import keras

        if scope.scope_input is not None or scope.prefix:
            raise self.resolver.error(
                entry.path, "an input entry belongs at the top of the model", key=True
            )
        kwargs = dict(entry.kwargs)
        if isinstance(kwargs.get("shape"), list):
            kwargs["shape"] = tuple(kwargs["shape"])
        if entry.name:
            kwargs["name"] = self._keras_name(scope, entry, 0)
        tensor = self.resolver.call("Input", keras.Input, entry.args, kwargs, entry.args_path)
        self.inputs.append(tensor)
        return tensor

    def _layer(self, entry: Entry, x: Any, name: str | None) -> Any:
        value = {entry.kind: entry.kwargs} if entry.kwargs else entry.kind
        if entry.args:
            value = {entry.kind: entry.args[0]}
        extra = {"name": name} if name else {}
        layer = self.resolver.build(LAYER, value, entry.path, **extra)
        try:
            return layer(x)
        except SpecError:
            raise
        except Exception as exc:  # shape mismatches and the like, raised while connecting
            class_name = type(layer).__name__
            raise self.resolver.error(
                entry.args_path, f"{class_name}: {keras_message(exc)}", key=True
            ) from None

    def _structure(self, scope: Scope, entry: Entry, x: Any, name: str | None) -> Any:
        """`residual` (merge of shortcut and main) and `parallel` (merge of branches)."""
        kind = normalize_name(entry.kind)
        allowed = {"main", "shortcut", "merge"} if kind == "residual" else {"branches", "merge"}
        for key in entry.kwargs:
            if key not in allowed:
                hint = did_you_mean(key, sorted(allowed))
                raise self.resolver.error(
                    (*entry.args_path, key), f"unknown key for {kind}{hint}", key=True
                )
        if name is None:
            self.block_uses[kind] = self.block_uses.get(kind, 0) + 1
            name_prefix = f"{scope.prefix}{kind}_{self.block_uses[kind]}_"
        prefix = f"{name}_" if name else name_prefix
        if kind == "residual":
            if "main" not in entry.kwargs:
                raise self.resolver.error(entry.path, "a residual needs main: [entries]", key=True)
            main, _ = self.connect(
                self._entries(entry, "main"),
                (*entry.args_path, "main"),
                scope_input=x,
                prefix=prefix,
            )
            shortcut, _ = self.connect(
                self._entries(entry, "shortcut"),
                (*entry.args_path, "shortcut"),
                scope_input=x,
                prefix=prefix,
            )
            branches = [shortcut, main]
        else:
            value = entry.kwargs.get("branches")
            if not isinstance(value, list) or not value:
                raise self.resolver.error(
                    entry.path, "a parallel needs branches: [[entries], [entries], ...]", key=True
                )
            branches = []
            for i, branch in enumerate(value):
                where = (*entry.args_path, "branches", i)
                if not isinstance(branch, list):
                    raise self.resolver.error(where, "expected a list of entries")
                out, _ = self.connect(branch, where, scope_input=x, prefix=prefix)
                branches.append(out)
        merge = entry.kwargs.get("merge", _MERGES[kind])
        merge_path = (*entry.args_path, "merge") if "merge" in entry.kwargs else entry.path
        layer = self.resolver.build(LAYER, merge, merge_path, **({"name": name} if name else {}))
        try:
            return layer(branches)
        except Exception as exc:
            raise self.resolver.error(
                entry.path, f"{kind} merge {type(layer).__name__}: {keras_message(exc)}", key=True
            ) from None

    def _entries(self, entry: Entry, key: str) -> list[Any]:
        value = entry.kwargs.get(key) or []
        if not isinstance(value, list):
            raise self.resolver.error((*entry.args_path, key), "expected a list of entries")
        return value

    def _block(self, entry: Entry, x: Any, name: str | None) -> Any:
        block_name = entry.kind
        block = self.blocks[block_name]
        if block_name in self.block_stack:
            raise self.resolver.error(entry.path, f"the block '{block_name}' uses itself", key=True)
        params = self._block_params(entry, block)
        self.block_uses[block_name] = self.block_uses.get(block_name, 0) + 1
        prefix = f"{name or block_name + '_' + str(self.block_uses[block_name])}_"
        where = self.resolver.document.locate(entry.path, key=True)
        outer = self.resolver
        self.resolver = outer.with_trail(f" (in block '{block_name}' used at {where})")
        self.block_stack.append(block_name)
        try:
            path = ("model", "blocks", block_name, "layers")
            entries = substitute(block.layers, params, path, self.resolver)
            out, _ = self.connect(entries, path, scope_input=x, prefix=prefix)
        finally:
            self.block_stack.pop()
            self.resolver = outer
        return out

    def _block_params(self, entry: Entry, block: Block) -> dict[str, Any]:
        if entry.args:
            raise self.resolver.error(
                entry.args_path, "a block takes its parameters as a mapping, e.g. {filters: 64}"
            )
        if isinstance(block.params, list):
            declared: dict[str, Any] = dict.fromkeys(block.params, _REQUIRED)
        else:
            declared = dict(block.params)
        for key in entry.kwargs:
            if key not in declared:
                hint = did_you_mean(key, list(declared))
                raise self.resolver.error(
                    (*entry.args_path, key),
                    f"unknown parameter '{key}' for block '{entry.kind}'{hint}",
                    key=True,
                )
        params = {**declared, **entry.kwargs}
        missing = [k for k, v in params.items() if v is _REQUIRED]
        if missing:
            raise self.resolver.error(
                entry.path,
                f"the block '{entry.kind}' needs {', '.join(missing)}",
                key=True,
            )
        return params


_REQUIRED = object()


def substitute(value: Any, params: dict[str, Any], path: PathKey, resolver: Resolver) -> Any:
    """Replace `$param` (whole values, keeping their type) and `${param}` (inside strings)."""
    if isinstance(value, dict):
        return {k: substitute(v, params, (*path, k), resolver) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, (*path, i), resolver) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    if value == SCOPE_INPUT:
        return value
    if re.fullmatch(r"\$\w+", value):
        key = value[1:]
        if key not in params:
            raise resolver.error(path, f"unknown parameter ${key}" + did_you_mean(key, params))
        return copy.deepcopy(params[key])

    def interpolate(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in params:
            raise resolver.error(path, f"unknown parameter ${{{key}}}" + did_you_mean(key, params))
        return str(params[key])

    return _INTERPOLATION.sub(interpolate, value)
