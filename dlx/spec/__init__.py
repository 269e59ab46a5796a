"""YAML -> positioned data -> strict pydantic models; overrides; error locations."""

from dlx.spec.component import normalize_name, split_component
from dlx.spec.document import Document, PathKey, apply_overrides, format_path, read_document
from dlx.spec.json_schema import ComponentArguments, json_schema
from dlx.spec.load import LoadedSpec, load_spec, load_spec_text
from dlx.spec.schema import MODEL_KINDS, ModelKind, Spec, register_model_kind

__all__ = [
    "MODEL_KINDS",
    "ComponentArguments",
    "Document",
    "ModelKind",
    "LoadedSpec",
    "PathKey",
    "Spec",
    "apply_overrides",
    "format_path",
    "json_schema",
    "load_spec",
    "load_spec_text",
    "normalize_name",
    "read_document",
    "register_model_kind",
    "split_component",
]
