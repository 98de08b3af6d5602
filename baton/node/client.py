"""NodeClient: how the CLI talks to the node running for a home (HTTP on loopback).

It finds the node through the home's run file, trusts that file only while the
node lock is held, and turns JSON error bodies back into BatonErrors.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from baton.core import errors, safejson
from baton.stores.files import check_private_dir
from baton.stores.home import HomePaths
from baton.stores.identity_store import read_api_token
from baton.stores.runfile import lock_holder, read_run_file

_BY_CODE = {
    cls.code: cls
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.BatonError)
    and cls is not errors.ConfigError
}


# The node is on loopback or a LAN address: never hand its bearer token to an HTTP proxy
# named in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def running_node(paths: HomePaths) -> dict[str, Any] | None:
    """The run file of the live node of this home, or None if no node runs."""
    info = read_run_file(paths.node_run_file)
    if info is None or info.get("pid") != lock_holder(paths.node_lock):
        return None  # no node, or a run file left by an earlier one (a new one is starting)
    return info


#: How long `restart_node` waits for the node to come back.
RESTART_WAIT_S = 90.0


def restart_node(paths: HomePaths, wait_s: float = RESTART_WAIT_S) -> dict[str, Any]:
    """Have this home's running node restart (SIGUSR1: it stops and its supervisor
    starts it again at once); its new run file once it is up. A node still starting
    (its lock held, no run file yet) is waited for first."""
    deadline = time.monotonic() + wait_s
    while (before := running_node(paths)) is None:
        if lock_holder(paths.node_lock) is None:
            raise errors.NodeNotRunning(f"no node is running for {paths.root}")
        if time.monotonic() > deadline:
            raise errors.Unavailable(f"the node of {paths.root} did not finish starting")
        time.sleep(0.2)  # polls the run file a starting node writes when it is ready
    os.kill(int(before["pid"]), signal.SIGUSR1)
    while time.monotonic() < deadline:
        now = running_node(paths)
        if now is not None and now["pid"] != before["pid"]:
            return now
        if lock_holder(paths.supervisor_lock) is None and lock_holder(paths.node_lock) is None:
            raise errors.Unavailable(f"the node of {paths.root} did not come back: its "
                                     "supervisor gave up (see `baton up` or its log)")  # fmt: skip
        time.sleep(0.2)  # polls the run file a new node writes when it is ready
    raise errors.Unavailable(
        f"the node of {paths.root} did not come back within {wait_s:.0f} s; see its log"
    )


def http_json(
    url: str, method: str = "GET", body: Any = None, token: str | None = None, timeout: float = 10.0
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _error_of(url, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.Unavailable(f"{url}: {reason}") from None
    try:
        return safejson.loads(raw or b"null")
    except ValueError:
        raise errors.NotABatonNode(f"{url} did not answer with JSON; is it a baton node?") from None


def _error_of(url: str, exc: urllib.error.HTTPError) -> errors.BatonError:
    try:
        doc = safejson.loads(exc.read())
        code, detail = doc["error"], doc["detail"]
    except (ValueError, KeyError, TypeError):
        return errors.NotABatonNode(f"{url}: HTTP {exc.code} without a baton error body")
    error = _BY_CODE.get(code, errors.BatonError)(detail)
    if isinstance(code, str) and code != error.code:
        error.code = code[:100]  # the node's own word (the pool's refusals name theirs)
    return error


class NodeClient:
    def __init__(self, home: Path, timeout: float = 10.0) -> None:
        self.paths = HomePaths(home)
        self.timeout = timeout
        if self.paths.run_dir.exists():  # else the run file could send our token anywhere
            check_private_dir(self.paths.run_dir)
        info = running_node(self.paths)
        if info is None:
            raise errors.NodeNotRunning(f"no node is running for {home}; start it with `baton up`")
        self.info = info
        self.token = read_api_token(home)

    def get(self, path: str) -> Any:
        return http_json(self.info["http"] + path, token=self.token, timeout=self.timeout)

    def post(self, path: str, body: Any) -> Any:
        return http_json(self.info["http"] + path, "POST", body, self.token, self.timeout)
