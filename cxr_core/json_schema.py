"""JSON Schema (draft 2020-12) generated from the typed dataclasses that write cxr-edge's JSON.

The manifest (:class:`cxr_core.bundle.Manifest`) and ``predictions.json``
(:class:`cxr_core.outputs.PredictionsDocument`) are written by ``to_dict`` of dataclasses; their
JSON Schemas are derived from the same classes here, so a field added to a class is in its schema.
A class whose JSON differs from its fields (for example :class:`~cxr_core.bundle.TensorSpec`, whose
quantization is nested) carries its schema as a ``JSON_SCHEMA`` class attribute. Field metadata:
``{"json": False}`` leaves a field out (never serialised), ``{"json": "inline"}`` marks a dict of
extra keys that are written beside the declared ones (the object then allows other properties),
``{"json": "optional"}`` a field that files written before it was added lack (not required).

The files in ``docs/schemas/`` are the output of ``python -m cxr_core.json_schema --write docs/schemas``
(``results.schema.json`` comes from ``python -m benchmarks.schema --write docs/schemas``); a test
keeps them identical to what the classes generate and validates real outputs against them.
"""

from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr_core.errors import CxrEdgeError


class SchemaGenerationError(CxrEdgeError, TypeError):
    """A dataclass field whose annotation has no JSON Schema (a contract class needs a JSON type)."""


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_BASE = "https://cxr-edge.invalid/schemas/"  # an identifier, never fetched


def _is_optional_none(tp: Any) -> bool:
    return tp is type(None)


def schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a Python type annotation; dataclasses go to ``defs`` and are referenced."""
    if tp is Any:
        return {}
    if _is_optional_none(tp):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(arg, defs) for arg in args]}
    if origin in (list, tuple, collections.abc.Sequence) or tp in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [schema_of(arg, defs) for arg in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        return {"type": "array", "items": schema_of(args[0], defs) if args else {}}
    if origin is dict or tp is dict:
        value = args[1] if len(args) == 2 else Any
        return {"type": "object", "additionalProperties": schema_of(value, defs)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: breaks recursion
            defs[name] = _dataclass_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise SchemaGenerationError(
        f"no JSON Schema for the annotation {tp!r}; expected a JSON type, a dataclass or a Literal"
    )


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    custom = getattr(cls, "JSON_SCHEMA", None)
    if custom is not None:
        return {"description": _summary(cls), **custom}
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    open_object = False
    for item in dataclasses.fields(cls):
        mode = item.metadata.get("json", True)
        if mode is False:
            continue
        if mode == "inline":
            open_object = True
            continue
        properties[item.name] = schema_of(hints[item.name], defs)
        if mode != "optional":
            required.append(item.name)
    return {
        "type": "object",
        "description": _summary(cls),
        "properties": properties,
        "required": required,
        "additionalProperties": open_object,
    }


def _summary(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().split("\n\n")[0].replace("\n", " ")


def document_schema(cls: type, file_name: str, title: str) -> dict[str, Any]:
    """The whole schema of a JSON document whose root is the dataclass ``cls``."""
    defs: dict[str, Any] = {}
    root = schema_of(cls, defs)
    name = root["$ref"].rsplit("/", 1)[-1]
    body = defs.pop(name)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": SCHEMA_ID_BASE + file_name,
        "title": title,
        **body,
        "$defs": dict(sorted(defs.items())),
    }


def manifest_schema() -> dict[str, Any]:
    from cxr_core.bundle import Manifest

    return document_schema(Manifest, "manifest.schema.json", "cxr-edge model bundle manifest (manifest.json)")


def predictions_schema() -> dict[str, Any]:
    from cxr_core.outputs import PredictionsDocument

    return document_schema(PredictionsDocument, "predictions.schema.json", "cxr-predict output (--json)")


#: The schemas this module owns: file name -> generator.
SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "manifest.schema.json": manifest_schema,
    "predictions.schema.json": predictions_schema,
}


def dumps(schema: dict[str, Any]) -> str:
    """The text a schema file holds (stable: sorted by generation order, two-space indent, newline)."""
    return json.dumps(schema, indent=2) + "\n"


def write_schemas(folder: Path, schemas: dict[str, Callable[[], dict[str, Any]]]) -> list[Path]:
    """Write each schema into ``folder``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in schemas.items():
        path = folder / name
        path.write_text(dumps(make()), encoding="utf-8")
        paths.append(path)
    return paths


def main(
    argv: list[str] | None = None, schemas: dict[str, Callable[[], dict[str, Any]]] | None = None
) -> int:
    parser = argparse.ArgumentParser(description="Write the JSON Schemas generated from cxr-edge's classes.")
    parser.add_argument("--write", type=Path, metavar="DIR", required=True, help="folder to write into")
    args = parser.parse_args(argv)
    for path in write_schemas(args.write, schemas or SCHEMAS):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
