"""Structured output: a JSON schema becomes a llama.cpp GBNF grammar (llama-cpp-python's converter)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError


def schema_to_grammar(schema: dict[str, Any] | str) -> str:
    """GBNF that only admits JSON valid under `schema`; InputError for a schema it cannot read."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text = schema if isinstance(schema, str) else json.dumps(schema)
    try:
        json.loads(text)
        return json_schema_to_gbnf(text)
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as e:
        raise InputError(f"cannot turn the JSON schema into a grammar ({e}): check the schema") from None
