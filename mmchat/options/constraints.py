"""What constrains an answer's shape: a JSON schema read once, and OpenAI's response_format as a schema.

Shared by --schema, `Runner.chat(schema=)`, batch lines and `ChatCompletionRequest`, so a
schema is read and checked one way. The schema stays a schema here: each engine turns it into
its own form (llama.cpp a GBNF grammar, engine/grammar.py; a server its response_format,
engine/dialects.py), because only the engine knows which form its backend honours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import InputError


def read_schema(schema: Mapping[str, Any] | str) -> dict[str, Any]:
    """A JSON schema (a dict, or its JSON text) as a dict; one clear error for anything else."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise InputError(f"the schema is not valid JSON ({e}): check {schema[:60]}") from None
    if not isinstance(schema, Mapping):
        raise InputError(f"a schema is a JSON object (a dict or its text), not {type(schema).__name__}")
    return dict(schema)


def response_format_schema(response_format: Any, where: str = "") -> Any:
    """OpenAI's response_format as a JSON schema: json_schema -> its schema, json_object -> any
    object, text (or none) -> None. `where` starts the error ("line 3: ")."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if schema is None:
            raise InputError(
                f'{where}response_format json_schema needs {{"json_schema": {{"name": ..., "schema": {{...}}}}}}'
            )
        return schema
    raise InputError(
        f"{where}response_format={response_format!r} is not valid: give {{'type': 'json_schema', 'json_schema': "
        "{'name': ..., 'schema': {...}}}, {'type': 'json_object'} or {'type': 'text'}"
    )
