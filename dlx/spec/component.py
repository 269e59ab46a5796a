"""The one notation every component is written in (docs/spec.md section 2)."""

from __future__ import annotations

from typing import Any

from dlx.errors import received


class ComponentError(ValueError):
    """A value that is not a component: what is wrong, and where inside the value.

    Args:
        message: what is wrong, what was expected and what was received.
        path: the keys inside the component that lead to the fault (empty: the component).
        on_key: whether the fault is the last key of `path` itself, not its value.
    """

    def __init__(self, message: str, path: tuple[Any, ...] = (), *, on_key: bool = False):
        super().__init__(message)
        self.path = path
        self.on_key = on_key


def split_component(value: Any, label: str = "component") -> tuple[str, list[Any], dict[str, Any]]:
    """Split a component into its name, positional arguments and keyword arguments.

    Every kind of component (layers, optimizers, losses, metrics, callbacks, initializers,
    regularizers, activations, schedules, data sources, ...) is split here, so that every kind
    refuses the same mistakes in the same words.

    `flatten` -> ("flatten", [], {}); `{dropout: 0.25}` -> ("dropout", [0.25], {});
    `{reshape: [7, 7, 64]}` -> ("reshape", [[7, 7, 64]], {});
    `{dense: {units: 64}}` -> ("dense", [], {"units": 64});
    `{flatten: null}` -> ("flatten", [], {}).

    Args:
        value: the component as written in the spec.
        label: what kind of component is expected, for the message (`loss`, `layer`).

    Raises:
        ComponentError: `value` is not a name or a one-key mapping from a name, or an argument
            name is not a string.
    """
    a_label = f"{'an' if label[:1] in 'aeiou' else 'a'} {label}"
    expected = f"expected {a_label}: a name, or a mapping with exactly one key (the name)"
    if isinstance(value, str):
        if not value.strip():
            raise ComponentError(f"expected {a_label} name, not an empty string")
        return value, [], {}
    if not isinstance(value, dict):
        raise ComponentError(f"{expected}. Received: {received(value)}{_type_of(value)}")
    if not value:
        raise ComponentError(f"{expected}. Received an empty mapping")
    if len(value) != 1:
        keys = ", ".join(received(k) for k in list(value)[:5])
        raise ComponentError(f"{expected}. Received {len(value)} keys: {keys}")
    ((name, args),) = value.items()
    if not isinstance(name, str) or not name.strip():
        raise ComponentError(
            f"expected {a_label} name as the key. Received: {received(name)}", (name,), on_key=True
        )
    if args is None:
        return name, [], {}
    if isinstance(args, dict):
        for key in args:
            if not isinstance(key, str):
                raise ComponentError(
                    f"expected an argument name. Received: {received(key)}{_type_of(key)}",
                    (name, key),
                    on_key=True,
                )
        return name, [], dict(args)
    return name, [args], {}


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return " (true or false)"
    if isinstance(value, (int, float)):
        return " (a number)"
    if isinstance(value, list):
        return " (a list)"
    if value is None:
        return " (null)"
    return ""


def normalize_name(name: str) -> str:
    """Names match without regard to case or underscores: `max_pooling2d` == `MaxPooling2D`."""
    return name.replace("_", "").replace("-", "").lower()
