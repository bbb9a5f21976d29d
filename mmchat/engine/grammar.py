"""Structured output here: a JSON schema becomes a llama.cpp GBNF grammar (llama-cpp-python's converter).

The local engine's form of a schema; a server is sent the schema itself (engine/dialects.py).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ..errors import InputError
from ..options import GenerationOptions


def grammar_for(options: GenerationOptions) -> str | None:
    """The GBNF grammar llama.cpp samples with: --grammar as given, or --schema's, made once per schema."""
    if options.schema is None:
        return options.grammar
    return _converted(json.dumps(options.schema))


@functools.lru_cache(maxsize=32)
def _converted(schema: str) -> str:
    return schema_to_grammar(schema)


def schema_to_grammar(schema: dict[str, Any] | str) -> str:
    """GBNF that only admits JSON valid under `schema`; InputError for a schema it cannot read."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text = schema if isinstance(schema, str) else json.dumps(schema)
    try:
        json.loads(text)
        return json_schema_to_gbnf(text)
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as e:
        raise InputError(f"cannot turn the JSON schema into a grammar ({e}): check the schema") from None
