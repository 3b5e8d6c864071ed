"""A tool's JSON Schema as the rules see it: its Cedar context type, its argument check and its pin.

An MCP server describes each tool with a name, a description the model reads and a JSON Schema of
its input. answerable governs a tool only once the RI has signed it: the signed Cedar schema
declares the tool's action, with its context typed from the input schema, and pins the tool's
whole description with an annotation, ``@mcp_tool("<sha256 of name, description and schema>")``.
A server that later changes the tool (a new argument, a reworded description the model will
obey) no longer matches its pin, and the tool is withheld until the RI signs again.

Only what Cedar can see is accepted: strings, integers, booleans, arrays of those (sets), and
objects with named properties. A schema feature the rules cannot see (``oneOf``, ``$ref``,
``number``, ``null``, open-ended objects) is refused by name and path, never dropped: a rule
cannot be judged sound over arguments it is not shown.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import cedarpy
import jsonschema
from pydantic import BaseModel, ConfigDict, model_validator

from answerable._canonical import canonical_bytes
from answerable._nesting import refuse_too_deep
from answerable.errors import ConfigError, PolicyInvalid

__all__ = [
    "ToolSchemaUnsupported",
    "args_from_schema",
    "cedar_action",
    "cedar_type",
    "signed_pins",
    "tool_pin",
]

_PIN = re.compile(r'@mcp_tool\("([0-9a-f]{64})"\)\naction "((?:[^"\\]|\\.)*)"')
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_SEEN = frozenset(
    {
        "type", "properties", "required", "items", "title", "description", "default", "examples",
        "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "minLength", "maxLength", "pattern", "format", "minItems", "maxItems", "uniqueItems",
        "additionalProperties", "$schema", "$id", "$comment", "readOnly", "writeOnly", "deprecated",
    }
)  # fmt: skip
"""Keywords that either shape a type Cedar has or only narrow the values the gateway checks."""

_SCALARS = {"string": "String", "integer": "Long", "boolean": "Bool"}


class ToolSchemaUnsupported(ConfigError):
    """A tool's input schema uses a feature the rules cannot see; ``feature`` and ``path`` say which."""

    def __init__(self, tool: str, path: str, feature: str, why: str) -> None:
        super().__init__(f"tool {tool}: input schema {path}: {feature}: {why}")
        self.tool = tool
        self.path = path
        self.feature = feature


def tool_pin(name: str, description: str | None, input_schema: Mapping[str, Any]) -> str:
    """SHA-256 hex of the tool as the model sees it: name, description and input schema (RFC 8785)."""
    return hashlib.sha256(
        canonical_bytes({"name": name, "description": description or "", "inputSchema": dict(input_schema)})
    ).hexdigest()


def cedar_type(tool: str, schema: Mapping[str, Any], path: str = "#") -> str:
    """The Cedar type of the values ``schema`` admits.

    Raises:
        ToolSchemaUnsupported: naming the first feature, and where, that Cedar cannot type.
    """
    if not isinstance(schema, Mapping):
        raise ToolSchemaUnsupported(tool, path, type(schema).__name__, "want a JSON Schema object")
    for keyword in schema:
        if keyword not in _SEEN:
            raise ToolSchemaUnsupported(
                tool, path, keyword, "the rules cannot see what it admits; give the tool a plainer schema"
            )
    kind = schema.get("type")
    if isinstance(kind, list):
        raise ToolSchemaUnsupported(tool, path, f"type {kind}", "a value of several types has no Cedar type")
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "number":
        raise ToolSchemaUnsupported(
            tool, path, "type number", "Cedar has no fractional numbers; use an integer (cents, milli-units)"
        )
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping):
            raise ToolSchemaUnsupported(
                tool, path, "array without items", "the rules cannot type its elements"
            )
        return f"Set<{cedar_type(tool, items, f'{path}/items')}>"
    if kind == "object":
        return _record(tool, schema, path)
    raise ToolSchemaUnsupported(tool, path, f"type {kind!r}", "the rules cannot see such a value")


def _record(tool: str, schema: Mapping[str, Any], path: str, extra: Mapping[str, str] | None = None) -> str:
    """A Cedar record type of an object schema; ``extra``: attributes answerable adds (what it
    reads from the ledger), which no argument may be named."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        raise ToolSchemaUnsupported(
            tool, path, "object without properties", "the rules cannot name its fields"
        )
    if not isinstance(schema.get("additionalProperties", False), bool):
        raise ToolSchemaUnsupported(
            tool, path, "additionalProperties", "a schema for unnamed fields: the rules cannot name them"
        )
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ToolSchemaUnsupported(tool, path, "required", "want a list of property names")
    fields = []
    for name in sorted(properties):
        label = name if _IDENT.fullmatch(name) else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        optional = "" if name in required else "?"
        fields.append(f"{label}{optional}: {cedar_type(tool, properties[name], f'{path}/properties/{name}')}")
    for name, cedar in sorted((extra or {}).items()):
        if name in properties:
            raise ToolSchemaUnsupported(
                tool,
                f"{path}/properties/{name}",
                name,
                "answerable gives this name what it reads from the ledger",
            )
        fields.append(f"{name}: {cedar}")
    return "{ " + ", ".join(fields) + " }" if fields else "{}"


def cedar_action(
    action: str,
    tool: str,
    description: str | None,
    input_schema: Mapping[str, Any],
    *,
    extra_context: Mapping[str, str] | None = None,
) -> str:
    """The Cedar schema declaration of one tool's action, pinned, for the RI to review and sign.

    Raises:
        ToolSchemaUnsupported: the input schema uses a feature Cedar cannot type.
    """
    if input_schema.get("type") != "object":
        raise ToolSchemaUnsupported(tool, "#", "type", "a tool's input must be an object")
    context = _record(tool, input_schema, "#", extra_context or {})
    pin = tool_pin(tool, description, input_schema)
    quoted = action.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'@mcp_tool("{pin}")\naction "{quoted}" appliesTo {{\n'
        f"  principal: [Agent],\n  resource: [Resource],\n  context: {context}\n}};\n"
    )


def signed_pins(schema_text: str) -> dict[str, str]:
    """Action name -> the ``@mcp_tool`` pin a signed Cedar schema gives it.

    Read from Cedar's own rendering of the parsed schema, so a comment or a string that looks
    like an annotation is not one.

    Raises:
        PolicyInvalid: the schema does not parse.
    """
    refuse_too_deep(schema_text, schema=True)
    try:
        rendered = str(cedarpy.Schema.from_str(schema_text))
    except ValueError as exc:
        raise PolicyInvalid(f"Cedar schema does not parse: {exc}") from exc
    return {action.replace('\\"', '"').replace("\\\\", "\\"): pin for pin, action in _PIN.findall(rendered)}


def _closed(schema: Any) -> Any:
    """``schema`` with every object closed to names it does not list (the gateway's reading)."""
    if not isinstance(schema, Mapping):
        return schema
    out = {k: _closed(v) if k == "items" else v for k, v in schema.items()}
    if isinstance(schema.get("properties"), Mapping):
        out["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
        out["additionalProperties"] = False
    return out


def args_from_schema(operation: str, input_schema: Mapping[str, Any]) -> type[BaseModel]:
    """An argument model that checks values against the tool's JSON Schema and keeps them as given.

    Names the schema does not list are refused (whatever ``additionalProperties`` says): the
    rules see each argument, so there is none they are not shown.

    Raises:
        ConfigError: the schema is not a valid JSON Schema.
    """
    try:
        jsonschema.Draft202012Validator.check_schema(dict(input_schema))
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"tool {operation}: input schema is not a JSON Schema: {exc.message}") from exc
    validator = jsonschema.Draft202012Validator(_closed(input_schema))

    class ToolArguments(BaseModel):
        model_config = ConfigDict(extra="allow", frozen=True)
        passes_extra: ClassVar[bool] = True
        """The arguments are the extra names (checked above): :func:`invoke` passes them on."""

        @model_validator(mode="before")
        @classmethod
        def _check(cls, value: Any) -> Any:
            errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
            if errors:
                raise ValueError(
                    "; ".join(
                        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
                    )
                )
            return value

    ToolArguments.__name__ = ToolArguments.__qualname__ = f"{operation}.args"
    return ToolArguments
