"""Deterministic example values that satisfy a JSON schema (for tool inputs and structured output)."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping

_MAX_DEPTH = 8
_STRING_CAP = 200

_FORMAT_EXAMPLES: Mapping[str, str] = {
    "date-time": "2025-01-01T12:00:00Z",
    "date": "2025-01-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "url": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


class SchemaValues:
    """Generator of schema-conforming values whose strings come from the prompt."""

    def __init__(self, root: object, prompt: str) -> None:
        self.root = root
        self.prompt = " ".join(prompt.split())[:_STRING_CAP]

    def value(self) -> object:
        """A value for the root schema."""
        return self._value(self.root, "value", 0, 0)

    def _resolve(self, ref: str) -> object:
        """Target of a local '#/...' JSON pointer, or an empty schema."""
        if not ref.startswith("#"):
            return {}
        node: object = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            key = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                return {}
        return node

    def _value(self, schema: object, name: str, depth: int, index: int) -> object:
        """A value for schema; name and index vary strings so unique items stay unique."""
        if not isinstance(schema, Mapping):
            return self._string({}, name, index)
        if "$ref" in schema and depth < _MAX_DEPTH:
            return self._value(self._resolve(str(schema["$ref"])), name, depth + 1, index)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            options = schema["enum"]
            return options[index % len(options)]
        if isinstance(schema.get("allOf"), list):
            return self._value(_merge_all_of(schema, self), name, depth + 1, index)
        for key in ("anyOf", "oneOf"):
            options = schema.get(key)
            if isinstance(options, list) and options:
                non_null = [o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")]
                return self._value((non_null or options)[0], name, depth + 1, index)
        kind = _schema_type(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, name, depth)
        if kind == "integer":
            return _integer(schema, index)
        if kind == "number":
            return _number(schema, index)
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self._string(schema, name, index)

    def _object(self, schema: Mapping[str, object], depth: int) -> dict[str, object]:
        """Every declared property (required ones too, even if undeclared); past the depth cap only required."""
        properties = schema.get("properties")
        props: Mapping[str, object] = properties if isinstance(properties, Mapping) else {}
        required_raw = schema.get("required")
        required = [str(r) for r in required_raw] if isinstance(required_raw, list) else []
        names = required if depth >= _MAX_DEPTH else list(props) + [r for r in required if r not in props]
        return {key: self._value(props.get(key, {}), key, depth + 1, 0) for key in names}

    def _array(self, schema: Mapping[str, object], name: str, depth: int) -> list[object]:
        """minItems items (at least one unless maxItems is 0), tuple-style prefixItems first."""
        prefix = schema.get("prefixItems")
        prefix_items = prefix if isinstance(prefix, list) else []
        count = max(_int_or(schema.get("minItems"), 0), len(prefix_items), 1)
        max_items = _opt_int(schema.get("maxItems"))
        if max_items is not None:
            count = min(count, max_items)
        items = schema.get("items", {})
        out: list[object] = []
        for i in range(count):
            item_schema = prefix_items[i] if i < len(prefix_items) else items
            out.append(self._value(item_schema, name, depth + 1, i))
        return out

    def _string(self, schema: Mapping[str, object], name: str, index: int) -> str:
        """A format example, else the prompt (or the property name), fitted to min/maxLength."""
        fmt = schema.get("format")
        if fmt == "uuid":
            digest = hashlib.sha256(f"{self.prompt}|{name}|{index}".encode()).digest()
            text = str(uuid.UUID(bytes=digest[:16], version=4))
        elif isinstance(fmt, str) and fmt in _FORMAT_EXAMPLES:
            text = _FORMAT_EXAMPLES[fmt]
        else:
            text = self.prompt or name
            if index:
                text = f"{text} {index + 1}"
        min_length = _int_or(schema.get("minLength"), 0)
        max_length = _opt_int(schema.get("maxLength"))
        if len(text) < min_length:
            text = text + "x" * (min_length - len(text))
        if max_length is not None and len(text) > max_length:
            # Keep unique items distinct when cutting by putting the index last.
            text = text[:max_length] if not index else (text[: max(0, max_length - len(str(index)))] + str(index))
        return text


def _merge_all_of(schema: Mapping[str, object], gen: SchemaValues) -> dict[str, object]:
    """Shallow merge of allOf parts (properties and required united)."""
    merged: dict[str, object] = {k: v for k, v in schema.items() if k != "allOf"}
    own_props, own_required = merged.get("properties"), merged.get("required")
    props: dict[str, object] = dict(own_props) if isinstance(own_props, Mapping) else {}
    required: list[object] = list(own_required) if isinstance(own_required, list) else []
    parts = schema.get("allOf")
    for part in parts if isinstance(parts, list) else []:
        resolved = gen._resolve(str(part["$ref"])) if isinstance(part, Mapping) and "$ref" in part else part
        if not isinstance(resolved, Mapping):
            continue
        for key, val in resolved.items():
            if key == "properties" and isinstance(val, Mapping):
                props.update(val)
            elif key == "required" and isinstance(val, list):
                required.extend(r for r in val if r not in required)
            else:
                merged.setdefault(key, val)
    if props:
        merged["properties"] = props
    if required:
        merged["required"] = required
    return merged


def _schema_type(schema: Mapping[str, object]) -> str:
    """Declared type (first non-null of a list), else one inferred from the keywords used."""
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), declared[0] if declared else None)
    if isinstance(declared, str):
        return declared
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _opt_int(value: object) -> int | None:
    """value when it is an int (not bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int_or(value: object, default: int) -> int:
    """value when it is an int (not bool), else default."""
    found = _opt_int(value)
    return default if found is None else found


def _float(schema: Mapping[str, object], key: str) -> float | None:
    """A numeric keyword as float, else None."""
    value = schema.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _bounds(schema: Mapping[str, object], step: float) -> tuple[float, float]:
    """Inclusive [low, high] from minimum/maximum and exclusive bounds moved in by step."""
    low, high = _float(schema, "minimum"), _float(schema, "maximum")
    low, high = (-math.inf if low is None else low), (math.inf if high is None else high)
    exclusive_low, exclusive_high = _float(schema, "exclusiveMinimum"), _float(schema, "exclusiveMaximum")
    if exclusive_low is not None:
        low = max(low, exclusive_low + step)
    if exclusive_high is not None:
        high = min(high, exclusive_high - step)
    return low, high


def _integer(schema: Mapping[str, object], index: int) -> int:
    """The in-range integer nearest 42 (on multipleOf when given), shifted by index for unique items."""
    low, high = _bounds(schema, 1)
    multiple = schema.get("multipleOf")
    step = multiple if isinstance(multiple, int) and not isinstance(multiple, bool) and multiple > 0 else 1
    first = math.ceil(low / step) * step if math.isfinite(low) else -math.inf
    last = math.floor(high / step) * step if math.isfinite(high) else math.inf
    start = min(max(42 // step * step, first), last)
    for candidate in (start + index * step, start - index * step):
        if first <= candidate <= last:
            return int(candidate)
    return int(start)


def _number(schema: Mapping[str, object], index: int) -> float | int:
    """42.5 (+index), or a point inside tight bounds, moved onto multipleOf when given."""
    low, high = _bounds(schema, 1e-6)
    value = 42.5 + index
    if not low <= value <= high:
        if math.isfinite(low) and math.isfinite(high):
            value = low + (high - low) * (index + 1) / (index + 2)
        else:
            value = min(max(value, low), high)
    multiple = schema.get("multipleOf")
    if isinstance(multiple, (int, float)) and not isinstance(multiple, bool) and multiple > 0:
        value = math.ceil(value / multiple) * multiple
        if value > high:
            value -= multiple
        value = round(value, 10)
        if float(value).is_integer() and isinstance(multiple, int):
            return int(value)
    return value


def example_value(schema: object, prompt: str) -> object:
    """A deterministic value satisfying schema, with strings taken from prompt."""
    return SchemaValues(schema, prompt).value()
