"""Secrets between machines (SecretSync), with real nodes, the real wire and the
bundled chat service: a secret set on the holder reaches every standby sealed, and the
agent on another machine uses it after a failover; a changed secret reaches a running
agent; removing a machine names the secrets it knew and rotates every remaining
member's master key."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import pytest

from baton.channels.chat_server import ChatServer
from baton.demo.devmesh import Machine, Mesh
from tests.system.chat_kit import failed_over, holder, post, topic_messages
from tests.system.chat_kit import start_mesh as start_chat_mesh
from tests.waits import wait_for

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

VALUE = "sk-live-0123456789abcdef"


def reply_to(chat: ChatServer, topic: str, message_id: int) -> str | None:
    for m in topic_messages(chat, topic):
        if m["from"] == "bot" and m["reply_to"] == message_id:
            return str(m["text"])
    return None


def ask(chat: ChatServer, topic: str, text: str) -> str:
    sent = post(chat, topic, text)
    return wait_for(lambda: reply_to(chat, topic, sent), 60, f"the answer to {text!r}")


def set_secret(m: Machine, name: str, value: str) -> None:
    m.baton("secrets", "set", name, input=value)


def secret_names(m: Machine) -> list[str]:
    return [row["name"] for row in m.json("secrets", "list")]


def counter(m: Machine, name: str) -> int:
    return int(m.status()["counters"].get(name, 0))


def start_mesh(make_mesh: Callable[..., Mesh], chat: ChatServer) -> Mesh:
    env = {"BATON_AGENT_SECRETS": '["API_KEY"]'}
    return start_chat_mesh(
        make_mesh, chat, "python:tests.system.agents:env", ("alpha", "bravo", "charlie"), **env
    )


def test_a_secret_set_on_the_holder_is_used_by_the_agent_on_another_after_a_failover(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat)
    first = holder(mesh)
    assert first is not None
    assert ask(chat, "t", "API_KEY") == "API_KEY=-"
    set_secret(first, "API_KEY", VALUE)
    wait_for(lambda: ask(chat, "t", "API_KEY") == f"API_KEY={VALUE}", 60, "the running agent")
    others = [m for m in mesh.machines if m is not first]
    for m in others:  # counted once the store has it
        wait_for(lambda m=m: counter(m, "secrets.taken") >= 1, 60, f"{m.name} to take it")
        assert "API_KEY" in secret_names(m)
    epoch = first.status()["epoch"]
    first.send_signal(signal.SIGKILL)
    successor = wait_for(lambda: failed_over(mesh, epoch), 60, "a takeover")
    assert successor is not first
    assert ask(chat, "t", "API_KEY") == f"API_KEY={VALUE}"
    for m in mesh.machines:  # the value is in no log and no status
        logs = b"".join(p.read_bytes() for p in m.paths.logs_dir.glob("*"))
        assert VALUE.encode() not in logs
    assert VALUE not in str(successor.status())


def test_a_secret_changed_on_a_standby_reaches_the_holders_agent(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat)
    awake = holder(mesh)
    standby = next(m for m in mesh.machines if m is not awake)
    set_secret(standby, "API_KEY", "one")
    wait_for(lambda: ask(chat, "t", "API_KEY") == "API_KEY=one", 60, "the holder's agent")
    set_secret(standby, "API_KEY", "two")
    wait_for(lambda: ask(chat, "t", "API_KEY") == "API_KEY=two", 60, "the new value")
    standby.baton("secrets", "rm", "API_KEY")
    wait_for(lambda: ask(chat, "t", "API_KEY") == "API_KEY=-", 60, "the removal")


def key_ids(mesh: Mesh) -> dict[str, Any]:
    return {
        m.name: m.paths.machine_dir.joinpath("secrets-key.json").read_text() for m in mesh.machines
    }


def test_removing_a_machine_names_what_it_knew_and_rotates_every_master_key(
    make_mesh: Callable[..., Mesh], chat: ChatServer
) -> None:
    mesh = start_mesh(make_mesh, chat)
    awake = holder(mesh)
    assert awake is not None
    set_secret(awake, "API_KEY", VALUE)
    set_secret(awake, "OTHER_KEY", "x")
    for m in mesh.machines:
        wait_for(lambda m=m: len(secret_names(m)) == 2, 60, f"{m.name} to have both")
    before = key_ids(mesh)
    gone = next(m for m in mesh.machines if m is not awake)
    row = awake.json("machines", "remove", gone.name)
    assert row["secrets_known"] == ["API_KEY", "OTHER_KEY"]
    stayed = [m for m in mesh.machines if m is not gone]
    for m in stayed:
        wait_for(lambda m=m: counter(m, "secrets.rotated") == 1, 60, f"{m.name} to rotate")
        assert key_ids(mesh)[m.name] != before[m.name]
        assert row["machine_id"] in key_ids(mesh)[m.name]  # rotated for it
        assert sorted(secret_names(m)) == ["API_KEY", "OTHER_KEY"]  # nothing lost
    assert ask(chat, "t", "API_KEY") == f"API_KEY={VALUE}"
