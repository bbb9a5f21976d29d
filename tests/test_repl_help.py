"""What /help shows a user in the REPL: every command, in the order the REPL has always listed them."""

from __future__ import annotations

import re

from mmchat.runner import Runner
from mmchat.testing import FakeEngine
from tests.support.helpers import chat

#: the order /help listed the commands in before they were registered by decorator (commands.COMMANDS
#: at 209d6ee): the attachments' commands, /show after /detach, then the conversation's
HELP_ORDER = [
    "/attach",
    "/image",
    "/audio",
    "/video",
    "/paste",
    "/screenshot",
    "/rec",
    "/attachments",
    "/detach",
    "/show",
    "/system",
    "/set",
    "/model",
    "/clear",
    "/retry",
    "/undo",
    "/save",
    "/load",
    "/copy",
    "/stats",
    "/help",
    "/exit",
]


def test_help_lists_the_commands_in_their_old_order(tmp_path):
    code, out = chat(tmp_path, "/help", "/exit", runner=Runner(engine=FakeEngine()))
    assert code == 0
    listed = re.findall(r"^(/[a-z]+)\b", out, flags=re.MULTILINE)
    assert listed == HELP_ORDER  # /show after /detach, as before the registry
