"""Every option reaches each server under its own name, "off" included; --schema and --grammar as it takes them.

The stub answers as the real server does (tests/support/servers.py: its discovery, the fields its request
model reads, the values it refuses), so a field sent under another server's name shows up in
`stub.ignored()`, and a value the server refuses fails the command.
"""

from __future__ import annotations

import json

import pytest

from mmchat.engine.dialects import DIALECTS
from mmchat.options import SERVER_KINDS
from tests.support.helpers import invoke_real as mmchat
from tests.support.servers import SERVERS
from tests.support.stubserver import Stub, serve

KINDS = list(SERVER_KINDS)
EVERY_OPTION = [
    "-t",
    "0.7",
    "-n",
    "9",
    "--top-p",
    "0.9",
    "--top-k",
    "5",
    "--min-p",
    "0.1",
    "--repeat-penalty",
    "1.3",
    "--frequency-penalty",
    "0.5",
    "--presence-penalty",
    "0.25",
    "--seed",
    "7",
    "--stop",
    "END",
    "--ignore-eos",
]
OPENAI_FIELDS = {
    "max_tokens": 9,
    "temperature": 0.7,
    "top_p": 0.9,
    "frequency_penalty": 0.5,
    "presence_penalty": 0.25,
    "seed": 7,
    "stop": ["END"],
    "stream": True,
}
USAGE = {"stream_options": {"include_usage": True}}
EVERY_OPTION_SENT = {
    "llama-server": {**USAGE, "top_k": 5, "min_p": 0.1, "repeat_penalty": 1.3, "repeat_last_n": 64, "ignore_eos": True},
    "llama-cpp-python": {"top_k": 5, "min_p": 0.1, "repeat_penalty": 1.3},
    "vllm": {**USAGE, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.3, "ignore_eos": True},
    "sglang": {**USAGE, "top_k": 5, "min_p": 0.1, "repetition_penalty": 1.3, "ignore_eos": True},
    "openai": USAGE,
}
NOT_APPLIED = {
    "llama-server": "",
    "llama-cpp-python": "repeat_last_n, --ignore-eos",
    "vllm": "repeat_last_n",
    "sglang": "repeat_last_n",
    "openai": "--top-k, --min-p, --repeat-penalty, --ignore-eos",
}


def ask(kind: str, *args: str, stub: Stub | None = None):
    """`mmchat ask hi` against a stub of `kind`: the result, the stub, and the one request's options."""
    with serve(stub or Stub.like(kind)) as stub:
        result = mmchat("ask", "hi", "--base-url", stub.url, *args)
    sent = {k: v for k, v in stub.chats[0].items() if k not in ("messages", "model")} if stub.chats else None
    return result, stub, sent


@pytest.mark.parametrize("kind", KINDS)
def test_every_option_reaches_the_server_under_its_own_name(kind):
    result, stub, sent = ask(kind, *EVERY_OPTION)
    assert result.exit_code == 0, result.output
    assert sent == {**OPENAI_FIELDS, **EVERY_OPTION_SENT[kind]}
    assert stub.ignored() == []  # nothing the server would drop without a word
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    if NOT_APPLIED[kind]:
        assert warnings == [
            f"mmchat: warning: the server at {stub.url}/v1 ({DIALECTS[kind].name}) has nothing "
            f"for {NOT_APPLIED[kind]}: {'they are' if ',' in NOT_APPLIED[kind] else 'it is'} not "
            "applied to its answers"
            + (
                " (if it is llama-server, vLLM or SGLang behind a proxy, say so with --server-kind)"
                if kind == "openai"
                else ""
            )
        ]
    else:
        assert warnings == []


OFF = {
    "llama-server": {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "repeat_last_n": 64, "ignore_eos": False},
    "llama-cpp-python": {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0},
    "vllm": {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "ignore_eos": False},
    "sglang": {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "ignore_eos": False},  # SGLang refuses 0
    "openai": {},
}


@pytest.mark.parametrize("kind", KINDS)
def test_off_is_sent_as_the_server_spells_off_so_the_models_defaults_never_apply(kind):
    result, stub, sent = ask(kind, "--top-k", "0", "--min-p", "0", "--repeat-penalty", "1")
    assert result.exit_code == 0, result.output
    assert {k: sent[k] for k in OFF[kind]} == OFF[kind] and not set(OFF["llama-server"]) - set(OFF[kind]) & set(sent)
    assert stub.ignored() == [] and "warning" not in result.stderr  # off is what a server without them does


SCHEMA = {"title": "Cat check!", "type": "object", "properties": {"cat": {"type": "boolean"}}, "required": ["cat"]}
SCHEMA_SENT = {"type": "json_schema", "json_schema": {"name": "Cat_check", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("kind", KINDS)
def test_a_schema_goes_as_the_response_format_the_server_honours(kind, tmp_path):
    given = tmp_path / "cat.json"
    given.write_text(json.dumps(SCHEMA))
    result, stub, sent = ask(kind, "--schema", str(given))
    assert result.exit_code == 0, result.output
    if kind == "llama-cpp-python":  # its response_format takes only "text" and "json_object" (with a schema)
        assert sent["response_format"] == {"type": "json_object", "schema": SCHEMA}
    else:
        assert sent["response_format"] == SCHEMA_SENT
    assert not {"grammar", "json_schema", "ebnf", "structured_outputs"} & set(sent) and stub.ignored() == []


GRAMMAR = 'root ::= ("yes" | "no")\n'
GRAMMAR_SENT = {
    "llama-server": {"grammar": GRAMMAR},
    "llama-cpp-python": {"grammar": GRAMMAR},
    "vllm": {"structured_outputs": {"grammar": GRAMMAR}},
    "sglang": {"ebnf": GRAMMAR},
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_grammar_goes_as_the_server_takes_it_or_is_refused_unsent(kind, tmp_path):
    gbnf = tmp_path / "yes-no.gbnf"
    gbnf.write_text(GRAMMAR)
    result, stub, sent = ask(kind, "--grammar", str(gbnf))
    if kind == "openai":
        assert result.exit_code == 2 and sent is None
        assert result.stderr.splitlines() == [
            f"mmchat: error: the server at {stub.url}/v1 (a plain OpenAI API) takes no GBNF grammar: give the "
            "answer's shape as a JSON schema (--schema), or use llama-server, vLLM or SGLang (behind a proxy: say "
            "which with --server-kind)"
        ]
        return
    assert result.exit_code == 0, result.output
    assert {k: sent[k] for k in GRAMMAR_SENT[kind]} == GRAMMAR_SENT[kind] and stub.ignored() == []
    assert "response_format" not in sent


def test_a_server_behind_a_proxy_is_named_with_server_kind():
    behind_proxy = Stub(models=[{"id": "qwen", "owned_by": "openai"}], server=SERVERS["vllm"])
    guessed, _, plain = ask("vllm", "--top-k", "5", stub=behind_proxy)
    assert "top_k" not in plain and "--top-k" in guessed.stderr and "--server-kind" in guessed.stderr
    told, stub, sent = ask(
        "vllm",
        "--top-k",
        "5",
        "--server-kind",
        "vllm",
        stub=Stub(models=[{"id": "qwen", "owned_by": "openai"}], server=SERVERS["vllm"]),
    )
    assert told.exit_code == 0 and sent["top_k"] == 5 and stub.ignored() == [] and "warning" not in told.stderr
    wrong = mmchat("ask", "hi", "--base-url", "http://127.0.0.1:9", "--server-kind", "tgi")
    assert wrong.exit_code == 2
    assert (
        "--server-kind 'tgi' is not valid: give one of llama-server, llama-cpp-python, vllm, sglang, openai"
        in wrong.stderr
    )


def test_a_missing_field_is_named_once_per_server_not_per_turn():
    with serve(Stub.like("vllm")) as stub:
        result = mmchat("chat", "--base-url", stub.url, "--repeat-penalty", "1.3", input="one\ntwo\nthree\n")
    assert result.exit_code == 0, result.output
    assert len(stub.chats) == 3 and result.stderr.count("repeat_last_n") == 1


def test_a_batch_lines_grammar_replaces_the_commands_schema_and_reaches_the_server(tmp_path):
    requests = tmp_path / "requests.jsonl"
    lines = [
        {"custom_id": "schema", "body": {"messages": [{"role": "user", "content": "a"}]}},
        {"custom_id": "grammar", "body": {"messages": [{"role": "user", "content": "b"}], "grammar": GRAMMAR}},
    ]
    requests.write_text(
        "".join(json.dumps({**line, "method": "POST", "url": "/v1/chat/completions"}) + "\n" for line in lines)
    )
    with serve(Stub.like("sglang")) as stub:
        result = mmchat("batch", "-i", str(requests), "--base-url", stub.url, "--schema", json.dumps(SCHEMA))
    assert result.exit_code == 0, result.output
    by_text = {body["messages"][-1]["content"]: body for body in stub.chats}
    assert by_text["a"]["response_format"] == SCHEMA_SENT and "ebnf" not in by_text["a"]
    assert by_text["b"]["ebnf"] == GRAMMAR and "response_format" not in by_text["b"]


def test_each_server_kind_has_a_dialect():
    assert tuple(DIALECTS) == SERVER_KINDS and set(SERVERS) == set(SERVER_KINDS)
