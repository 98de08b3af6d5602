"""Spec parsing, the reply check, the in-process agents and the decoding of worker answers.

No worker processes here: tests/agents/test_runner.py runs them.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from baton.agents.base import MAX_REPLIES, MAX_REPLY_CHARS, AgentFailed, AgentMessage, Turn
from baton.agents.builtin import (
    ECHO_STATE_FILE,
    CmdAgent,
    EchoAgent,
    check_replies,
    load_agent,
    load_python_agent,
    parse_spec,
)
from baton.agents.worker import (
    BrokenAnswer,
    answer,
    decode_answer,
    decode_request,
    encode_request,
)
from baton.core.errors import ConfigError

MSG = AgentMessage(topic="t", message_id=7, text="hello", sender="u1")
HISTORY = [Turn("a", ("b",)), Turn("c", ("d", "e"))]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog"
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


# --- parse_spec ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("echo", ("echo", "")),
        ("  echo\n", ("echo", "")),
        ("python:tests.agents.sample_agents:ok", ("python", "tests.agents.sample_agents:ok")),
        ("python:mod:f", ("python", "mod:f")),
        (f"cmd:{sys.executable} -c 'print(1)'", ("cmd", f"{sys.executable} -c 'print(1)'")),
    ],
)
def test_parse_spec_accepts(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


def test_parse_spec_finds_a_program_on_path(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(program.parent))
    assert parse_spec("cmd:prog --flag") == ("cmd", "prog --flag")


def test_parse_spec_accepts_a_relative_path(program: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(program.parent)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert parse_spec("cmd:./prog") == ("cmd", "./prog")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "unknown agent spec"),
        ("echo2", "unknown agent spec"),
        ("ECHO", "unknown agent spec"),
        ("shell:ls", "unknown agent spec"),
        ("cmd", "unknown agent spec"),
        ("cmd:", "names no program"),
        ("cmd:   ", "names no program"),
        ("cmd:'unclosed", "cannot split"),
        ("cmd:/nonexistent/baton-test-prog", "does not exist"),
        ("cmd:baton-test-no-such-program-xyz", "not found on PATH"),
        ("python:", "not of the form"),
        ("python:mod", "not of the form"),
        ("python:a:b:c", "not of the form"),
        ("python::f", "is not a module name"),
        ("python:1mod:f", "is not a module name"),
        ("python:pkg..mod:f", "is not a module name"),
        ("python:mod:", "is not a function name"),
        ("python:mod:f-x", "is not a function name"),
    ],
)
def test_parse_spec_refuses(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(spec)
    assert info.value.knob == "agent"
    assert fragment in str(info.value)


def test_parse_spec_refuses_a_program_that_is_not_executable(program: Path) -> None:
    program.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(ConfigError, match="not executable") as info:
        parse_spec(f"cmd:{program}")
    assert info.value.knob == "agent"


# --- check_replies -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("one", ["one"]),
        (["a", "b"], ["a", "b"]),
        (["x" * MAX_REPLY_CHARS], ["x" * MAX_REPLY_CHARS]),
        (["r"] * MAX_REPLIES, ["r"] * MAX_REPLIES),
        ([" padded "], [" padded "]),
    ],
)
def test_check_replies_accepts(value: object, expected: list[str]) -> None:
    assert check_replies(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (42, "not int"),
        (None, "not null"),
        ({"replies": ["a"]}, "not dict"),
        (("a",), "not tuple"),
        ([], "no replies"),
        ("", "reply 1 is empty"),
        (["ok", ""], "reply 2 is empty"),
        (["  \n"], "reply 1 is empty"),
        ([1], "reply 1 is int"),
        (["a", None], "reply 2 is null"),
        (["r"] * (MAX_REPLIES + 1), f"{MAX_REPLIES + 1} replies"),
        (["x" * (MAX_REPLY_CHARS + 1)], f"{MAX_REPLY_CHARS + 1} characters"),
    ],
)
def test_check_replies_refuses(value: object, fragment: str) -> None:
    with pytest.raises(AgentFailed) as info:
        check_replies(value)
    assert info.value.reason == "garbage"
    assert fragment in str(info.value)


def test_check_replies_returns_a_fresh_list() -> None:
    replies = ["a"]
    checked = check_replies(replies)
    checked.append("b")
    assert replies == ["a"]


# --- the agents ---------------------------------------------------------------------


def test_echo_names_the_earlier_turns() -> None:
    assert EchoAgent().handle(MSG, HISTORY) == ["echo: hello (earlier turns: 2)"]
    assert EchoAgent().handle(MSG, []) == ["echo: hello (earlier turns: 0)"]


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("photo", "my cat", "echo: [photo] my cat (earlier turns: 2)"),
        ("photo", "", "echo: [photo] (earlier turns: 2)"),
        ("document", "the report", "echo: [document] the report (earlier turns: 2)"),
        ("voice", "", "echo: [voice] (earlier turns: 2)"),
        ("video", "look", "echo: [video] look (earlier turns: 2)"),
        ("audio", "", "echo: [audio] (earlier turns: 2)"),
        ("animation", "lol", "echo: [animation] lol (earlier turns: 2)"),
        ("sticker", "\U0001f44d", "echo: [sticker] \U0001f44d (earlier turns: 2)"),
        ("other", "", "echo: [other] (earlier turns: 2)"),
        ("text", "hello", "echo: hello (earlier turns: 2)"),
    ],
)
def test_echo_answers_every_kind(kind: str, text: str, expected: str) -> None:
    message = AgentMessage(topic="t", message_id=7, text=text, sender="u1", kind=kind)
    assert EchoAgent().handle(message, HISTORY) == [expected]
    assert check_replies([expected]) == [expected]  # a usable answer, caption or not


def test_load_agent_builds_each_kind() -> None:
    assert isinstance(load_agent("echo"), EchoAgent)
    assert isinstance(load_agent(f"cmd:{sys.executable}"), CmdAgent)
    agent = load_agent("python:tests.agents.sample_agents:ok")
    assert agent.handle(MSG, HISTORY) == ["ok: hello", "turns: 2"]


def test_python_agent_may_return_one_string() -> None:
    agent = load_python_agent("tests.agents.sample_agents:single")
    assert agent.handle(MSG, []) == ["single: hello"]


def test_python_agent_that_raises_is_an_error() -> None:
    agent = load_python_agent("tests.agents.sample_agents:raises")
    with pytest.raises(AgentFailed) as info:
        agent.handle(MSG, [])
    assert info.value.reason == "error"
    assert "ValueError: boom on hello" in str(info.value)


def test_python_agent_returning_garbage_is_garbage() -> None:
    agent = load_python_agent("tests.agents.sample_agents:garbage")
    with pytest.raises(AgentFailed) as info:
        agent.handle(MSG, [])
    assert info.value.reason == "garbage"


@pytest.mark.parametrize(
    ("rest", "fragment"),
    [
        ("tests.agents.no_such_module:f", "cannot import"),
        ("tests.agents.sample_agents:no_such_function", "has no function"),
        ("tests.agents.sample_agents:os", "has no function"),  # a module, not callable
    ],
)
def test_load_python_agent_refuses(rest: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_python_agent(rest)
    assert info.value.knob == "agent"
    assert fragment in str(info.value)


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "agent.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


def test_cmd_agent_gets_message_and_history_as_json(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        "import json, sys\n"
        "req = json.load(sys.stdin)\n"
        "m = req['message']\n"
        "print(json.dumps({'replies': [m['text'] + ' ' + m['sender'], "
        "str(len(req['history'])), req['history'][1]['replies'][1]]}))\n",
    ).split()
    assert CmdAgent(argv).handle(MSG, HISTORY) == ["hello u1", "2", "e"]


def test_cmd_agent_gets_the_message_kind(tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        "import json, sys\n"
        "m = json.load(sys.stdin)['message']\n"
        "print(json.dumps({'replies': [m['kind'] + ':' + m['text'] + ':' + str(sorted(m))]}))\n",
    ).split()
    sticker = AgentMessage(topic="t", message_id=7, text="\U0001f44d", sender="u1", kind="sticker")
    fields = "['kind', 'message_id', 'sender', 'text', 'topic']"
    assert CmdAgent(argv).handle(sticker, []) == [f"sticker:\U0001f44d:{fields}"]
    assert CmdAgent(argv).handle(MSG, []) == [f"text:hello:{fields}"]


@pytest.mark.parametrize(
    ("body", "reason", "fragment"),
    [
        ("import sys; sys.stderr.write('it broke'); sys.exit(4)", "crash", "exit status 4"),
        ("import sys; sys.stderr.write('it broke'); sys.exit(4)", "crash", "it broke"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "crash", "signal 9"),
        ("print('hello')", "garbage", "not JSON"),
        ("print('[1, 2]')", "garbage", 'with "replies"'),
        ("print('{\"replies\": 5}')", "garbage", "not int"),
        ("import sys; sys.stdout.write('x' * (5 << 20))", "garbage", "longer than"),
    ],
)
def test_cmd_agent_failures(tmp_path: Path, body: str, reason: str, fragment: str) -> None:
    agent = CmdAgent(_script(tmp_path, body + "\n").split())
    with pytest.raises(AgentFailed) as info:
        agent.handle(MSG, [])
    assert info.value.reason == reason
    assert fragment in str(info.value)


def test_cmd_agent_that_cannot_run_is_a_crash(tmp_path: Path) -> None:
    with pytest.raises(AgentFailed) as info:
        CmdAgent([os.fspath(tmp_path / "gone")]).handle(MSG, [])
    assert info.value.reason == "crash"


# --- answers from a worker ------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"id": 2, "replies": ["a"]}', "expected 1"),
        (b'{"id": 1}', "neither replies"),
        (b'{"id": 1, "error": "x", "reason": "mystery"}', "neither replies"),
    ],
)
def test_decode_answer_refuses_a_broken_line(line: bytes, fragment: str) -> None:
    with pytest.raises(BrokenAnswer) as info:
        decode_answer(line, 1)
    assert info.value.reason == "garbage"
    assert fragment in str(info.value)


def test_decode_answer_reports_the_agents_failure() -> None:
    with pytest.raises(AgentFailed) as info:
        decode_answer(b'{"id": 1, "error": "ValueError: x", "reason": "error"}', 1)
    assert not isinstance(info.value, BrokenAnswer)
    assert (info.value.reason, str(info.value)) == ("error", "error: ValueError: x")
    with pytest.raises(AgentFailed) as info:
        decode_answer(b'{"id": 1, "replies": []}', 1)
    assert info.value.reason == "garbage" and not isinstance(info.value, BrokenAnswer)


# --- the worker protocol ---------------------------------------------------------------


def test_a_request_carries_the_message_kind() -> None:
    photo = AgentMessage(topic="t", message_id=7, text="", sender="u1", kind="photo")
    line = encode_request(3, photo, HISTORY)
    assert decode_request(line) == (3, photo, HISTORY)
    seen: list[AgentMessage] = []
    reply = answer(lambda m, h: seen.append(m) or [f"got {m.kind}"], line)
    assert reply == {"id": 3, "replies": ["got photo"]} and seen == [photo]


def test_a_request_from_a_runner_before_kinds_is_a_text_message() -> None:
    line = b'{"id": 1, "message": {"topic": "t", "message_id": 7, "text": "hi", "sender": "u"},'
    line += b' "history": []}'
    assert decode_request(line)[1] == AgentMessage("t", 7, "hi", "u", "text")


@pytest.mark.parametrize("kind", ["gif", None, 1, ["photo"]])
def test_a_request_of_an_unknown_kind_is_a_bad_request(kind: object) -> None:
    body = {"topic": "t", "message_id": 7, "text": "", "sender": "u", "kind": kind}
    line = json.dumps({"id": 1, "message": body, "history": []}).encode()
    reply = answer(lambda m, h: ["never"], line)
    assert reply["reason"] == "error" and "bad request" in reply["error"]


@pytest.mark.parametrize("message", [[], "hi", None, 5])
def test_a_request_whose_message_is_no_object_is_a_bad_request(message: object) -> None:
    line = json.dumps({"id": 1, "message": message, "history": []}).encode()
    reply = answer(lambda m, h: ["never"], line)
    assert reply["reason"] == "error" and "bad request" in reply["error"]


def test_the_echo_agent_keeps_a_line_per_turn_in_its_state_directory(tmp_path: Path) -> None:
    agent = EchoAgent(str(tmp_path))
    agent.handle(AgentMessage("t1", 7, "hi", "u"), [])
    agent.handle(AgentMessage("t2", 8, "ho", "u"), [])
    assert (tmp_path / ECHO_STATE_FILE).read_text() == "t1 7\nt2 8\n"
    assert (tmp_path / ECHO_STATE_FILE).stat().st_mode & 0o777 == 0o600
    gone = EchoAgent(str(tmp_path / "missing"))  # a state it cannot write: it still answers
    assert gone.handle(AgentMessage("t", 1, "x", "u"), []) == ["echo: x (earlier turns: 0)"]
