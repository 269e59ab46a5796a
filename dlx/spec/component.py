"""The one notation every component is written in (docs/spec.md section 2)."""

from __future__ import annotations

from typing import Any


def split_component(value: Any) -> tuple[str, list[Any], dict[str, Any]]:
    """Split a component into its name, positional arguments and keyword arguments.

    `flatten` -> ("flatten", [], {}); `{dropout: 0.25}` -> ("dropout", [0.25], {});
    `{reshape: [7, 7, 64]}` -> ("reshape", [[7, 7, 64]], {});
    `{dense: {units: 64}}` -> ("dense", [], {"units": 64});
    `{flatten: null}` -> ("flatten", [], {}).
    """
    if isinstance(value, str):
        return value, [], {}
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"expected a component name or a one-key mapping. Received: {value!r}")
    ((name, args),) = value.items()
    if args is None:
        return str(name), [], {}
    if isinstance(args, dict):
        return str(name), [], dict(args)
    return str(name), [args], {}


def normalize_name(name: str) -> str:
    """Names match without regard to case or underscores: `max_pooling2d` == `MaxPooling2D`."""
    return name.replace("_", "").replace("-", "").lower()
