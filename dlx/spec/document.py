"""YAML text -> plain Python data that remembers where every key and value came from.

PyYAML's composer gives nodes with marks; we walk them ourselves instead of letting a constructor
build objects, so that:

- only plain data is ever made (`!!python/...` and every other object tag is an error, nothing
  runs);
- duplicate keys are errors, not silently last-wins;
- every key and value keeps its file, line and column for error messages;
- `1e-4` is a float (YAML 1.2), not the string PyYAML's YAML 1.1 resolver makes of it;
- a small file cannot make a huge spec: aliases may not contain themselves, the spec they expand
  to is bounded (`MAX_VALUES`), and so is nesting (`MAX_DEPTH`), checked while composing, before
  PyYAML's recursive composer could exhaust Python's stack.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dlx.errors import Location, Problem, SpecError, relative_path

PathKey = tuple[Any, ...]

_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
}

_FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


MAX_DEPTH = 100
"""The deepest nesting of lists and mappings a spec may have."""

MAX_VALUES = 100_000
"""The most values (keys, scalars, lists, mappings) a spec may hold once aliases are expanded."""


class RefusedYAMLError(yaml.MarkedYAMLError):
    """Valid YAML that dlx will not read: a recursive alias, an alias bomb, too deep a nesting."""


class _BoundedComposer(yaml.composer.Composer, yaml.resolver.Resolver):
    """PyYAML's composer, bounding what a spec expands to; reads `1e-4` as a float (YAML 1.2).

    PyYAML's composer shares an anchored node between its aliases; dlx then copies it at every
    alias (each copy has its own location). So while composing, this composer counts the values
    the expanded spec will hold, refuses aliases to a node that is still open (a node containing
    its own alias would expand forever), and refuses nesting deeper than `MAX_DEPTH`.
    """

    # libyaml's parser has its own composer; these keep this one whatever parser comes first.
    check_node = yaml.composer.Composer.check_node
    get_node = yaml.composer.Composer.get_node
    get_single_node = yaml.composer.Composer.get_single_node

    def _start_bounds(self) -> None:
        self._depth = 0
        self._values = 0
        self._open_anchors: set[str] = set()
        self._expanded_size: dict[str, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(event, parent, index)
        start = self._values
        self._values += 1
        self._check_size(event, "the spec holds")
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if nested and self._depth >= MAX_DEPTH:
            raise RefusedYAMLError(
                problem=f"lists and mappings are nested more than {MAX_DEPTH} levels deep",
                problem_mark=event.start_mark,
            )
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        self._depth += nested
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nested
            self._open_anchors.discard(anchor)
        if anchor is not None:
            self._expanded_size[anchor] = self._values - start
        return node

    def _compose_alias(self, event: yaml.AliasEvent, parent: Any, index: Any) -> yaml.Node:
        if event.anchor in self._open_anchors:
            raise RefusedYAMLError(
                problem=f"the alias *{event.anchor} is inside the value it refers to "
                "(a recursive alias)",
                problem_mark=event.start_mark,
            )
        self._values += self._expanded_size.get(event.anchor, 0)
        self._check_size(event, f"the alias *{event.anchor} makes the spec hold")
        return super().compose_node(parent, index)

    def _check_size(self, event: yaml.Event, what: str) -> None:
        if self._values > MAX_VALUES:
            raise RefusedYAMLError(
                problem=f"{what} more than {MAX_VALUES:,} values once aliases are expanded",
                problem_mark=event.start_mark,
            )


_BoundedComposer.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_BoundedComposer.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_1_2, list("-+0123456789."))


class _Loader(_BoundedComposer, yaml.SafeLoader):
    """PyYAML's own parser, in Python: slow on large text, but its messages say the most."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self._start_bounds()


if yaml.__with_libyaml__:

    class _LibyamlLoader(_BoundedComposer, yaml.cyaml.CParser):
        """libyaml's parser under the same composer: a 50 MB value in seconds, not minutes."""

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._start_bounds()

    _FastLoader: type[_BoundedComposer] = _LibyamlLoader
else:  # PyYAML built without libyaml
    _FastLoader = _Loader


_SLOW_PARSE_LIMIT = 1_000_000
"""Text up to this many characters with a syntax error is parsed again by `_Loader`."""


def compose(text: str) -> yaml.Node | None:
    """Compose YAML text into nodes, bounded (see `_BoundedComposer`).

    Raises:
        yaml.YAMLError: the text is not YAML; `RefusedYAMLError`: it is too large once expanded.
    """
    try:
        return yaml.compose(text, Loader=_FastLoader)
    except RefusedYAMLError:
        raise
    except yaml.YAMLError:
        if len(text) > _SLOW_PARSE_LIMIT:
            raise
    return yaml.compose(text, Loader=_Loader)  # raises again, in PyYAML's clearer words


def format_path(path: PathKey) -> str:
    """`("train", "optimizer", "adam")` -> `train.optimizer.adam`."""
    return ".".join(str(part) for part in path)


@dataclass
class Document:
    """A spec file read into plain data, with the location of every key and value."""

    path: Path
    data: Any
    lines: list[str]
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)

    @functools.cached_property
    def display_path(self) -> str:
        """The path as errors show it (computed once: every value's location holds it)."""
        return relative_path(self.path)

    @property
    def base_dir(self) -> Path:
        """Relative paths in a spec are relative to the spec file."""
        return self.path.resolve().parent

    def locate(self, path: PathKey, *, key: bool = False) -> Location | None:
        """Where `path` is written: its key (`key=True`) or its value, else its nearest ancestor."""
        path = tuple(path)
        while True:
            table = self.keys if key else self.values
            if path in table:
                return table[path]
            if key and path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: PathKey, message: str, *, key: bool = False) -> Problem:
        """A problem at `path`, located in this document."""
        return Problem(message=message, key=format_path(path), location=self.locate(path, key=key))

    def error(self, path: PathKey, message: str, *, key: bool = False) -> SpecError:
        return SpecError([self.problem(path, message, key=key)])


def read_document(path: str | Path) -> Document:
    """Read a spec file into a `Document`.

    Raises:
        SpecError: the file is missing, is not valid YAML, has duplicate keys or object tags.
    """
    path = Path(path)
    shown = relative_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(f"no such spec file: {shown}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(f"cannot read spec file {shown}: {exc}")]) from None
    return parse_document(text, path)


def parse_document(text: str, path: Path) -> Document:
    """Parse YAML `text` (read from `path`) into a `Document`."""
    lines = text.splitlines()
    doc = Document(path=path, data=None, lines=lines)
    try:
        node = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = _location(doc, mark, mark) if mark else None
        raise SpecError([Problem(_yaml_message(exc), location=location)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(f"invalid YAML: {exc}", location=None)]) from None
    if node is None:
        raise SpecError([Problem("the spec is empty", location=Location(doc.display_path, 1, 1))])
    problems: list[Problem] = []
    doc.data = _plain(node, (), doc, problems)
    if problems:
        raise SpecError(problems)
    return doc


def _yaml_message(exc: yaml.MarkedYAMLError, *, override_column: int | None = None) -> str:
    """What is wrong with YAML text, and where the construct it belongs to began.

    `override_column` is where the text starts in a `--set` argument (then it is a value).
    """
    if isinstance(exc, RefusedYAMLError):
        return str(exc.problem)
    what = "YAML" if override_column is None else "YAML value"
    message = f"invalid {what}: {exc.problem or exc.context}"
    mark = exc.context_mark
    if exc.context and exc.problem and mark:
        if override_column is None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
        else:
            where = f"column {override_column + mark.column}"
        message += f" ({exc.context} at {where})"
    return message


def _location(doc: Document, start: yaml.Mark, end: yaml.Mark) -> Location:
    source = doc.lines[start.line] if start.line < len(doc.lines) else ""
    end_column = end.column + 1 if end.line == start.line else len(source.rstrip()) + 1
    end_column = max(end_column, start.column + 2)
    return Location(doc.display_path, start.line + 1, start.column + 1, end_column, source)


_constructor = yaml.constructor.SafeConstructor()


def _plain(node: yaml.Node, path: PathKey, doc: Document, problems: list[Problem]) -> Any:
    here = _location(doc, node.start_mark, node.end_mark)
    doc.values[path] = here
    if node.tag not in _PLAIN_TAGS:
        problems.append(
            Problem(
                f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed: "
                "a spec holds plain data only",
                key=format_path(path),
                location=here,
            )
        )
        return None
    if isinstance(node, yaml.ScalarNode):
        value = _constructor.construct_object(node)
        if node.tag.endswith(":timestamp"):
            return node.value
        return value
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    try:
        _constructor.flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        problems.append(Problem(f"invalid merge: {exc.problem}", format_path(path), here))
        return {}
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key_at = _location(doc, key_node.start_mark, key_node.end_mark)
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
            problems.append(Problem("a key must be a plain name", format_path(path), key_at))
            continue
        key = _constructor.construct_object(key_node)
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            key = str(key_node.value)
        key_path = (*path, key)
        if key in result:
            first = doc.keys[key_path]
            problems.append(
                Problem(
                    f"duplicate key '{key}' (first given at line {first.line})",
                    format_path(key_path),
                    key_at,
                )
            )
            continue
        doc.keys[key_path] = key_at
        result[key] = _plain(value_node, key_path, doc, problems)
    return result


def apply_overrides(doc: Document, overrides: list[str]) -> None:
    """Apply `--set dotted.path=value` overrides to `doc` in place; values are read as YAML.

    List indices are numbers (`model.layers.3.dense.units=128`); missing mappings on the way are
    created. Values set this way are located at their `--set` argument in error messages.

    Raises:
        SpecError: an override is malformed or its path does not fit the spec.
    """
    problems = []
    for override in overrides:
        try:
            _apply_override(doc, override)
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)


def _apply_override(doc: Document, override: str) -> None:
    def at(column: int, end: int) -> Location:
        return Location("--set", 1, column, end, override)

    dotted, sep, text = override.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted:
        raise SpecError(
            [Problem("expected KEY=VALUE, e.g. train.epochs=5", "", at(1, len(override) + 1))]
        )
    value_column = len(dotted) + 2
    try:
        value_node = compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        column = value_column + (mark.column if mark else 0)
        message = _yaml_message(exc, override_column=value_column)
        raise SpecError([Problem(message, dotted, at(column, column + 1))]) from None
    except yaml.YAMLError as exc:
        message = f"invalid YAML value: {exc}"
        raise SpecError([Problem(message, dotted, at(value_column, len(override) + 1))]) from None
    parts: list[Any] = [int(p) if p.lstrip("-").isdigit() else p for p in dotted.split(".")]
    path = tuple(parts)
    if doc.data is None:
        doc.data = {}
    parent: Any = doc.data
    for depth, part in enumerate(parts[:-1]):
        step = parent[part] if _has(parent, part) else None
        if step is None:
            if isinstance(parent, list):
                raise SpecError([_bad_index(doc, path[: depth + 1], override)])
            step = parent[part] = {}
        parent = step
    last = parts[-1]
    if isinstance(parent, list) and not _has(parent, last):
        raise SpecError([_bad_index(doc, path, override)])
    if not isinstance(parent, (dict, list)):
        shown = format_path(path[:-1])
        message = f"cannot set '{last}' inside {shown}, which holds {parent!r}, not a mapping"
        raise SpecError([Problem(message, format_path(path), at(1, len(dotted) + 1))])

    override_doc = Document(path=Path("--set"), data=None, lines=[text])
    problems: list[Problem] = []
    value = _plain(value_node, (), override_doc, problems) if value_node is not None else None
    if problems:
        raise SpecError(problems)
    parent[last] = value
    for table in (doc.values, doc.keys):
        for old in [p for p in table if p[: len(path)] == path]:
            del table[old]
    doc.keys[path] = at(1, len(dotted) + 1)
    value_at = at(value_column, max(len(override), value_column) + 1)
    doc.values[path] = value_at
    for sub in [*override_doc.values, *override_doc.keys]:
        doc.values.setdefault((*path, *sub), value_at)


def _has(container: Any, part: Any) -> bool:
    if isinstance(container, dict):
        return part in container
    if isinstance(container, list):
        return isinstance(part, int) and -len(container) <= part < len(container)
    return False


def _bad_index(doc: Document, path: PathKey, override: str) -> Problem:
    return Problem(
        f"no such item to set (in --set {override})",
        format_path(path),
        doc.locate(path[:-1]) or Location("--set", 1, 1, len(override) + 1, override),
    )
