"""Network partitions with real network namespaces and iptables (root only).

Theory of operation. A NetLab makes, in the root namespace, a Linux bridge
``bt-<6 hex>`` with 10.231.N.1/24 (N random, unused in ``ip -o addr`` and ``ip route``):
the *gateway*, where a root-namespace service (a chat server) binds. Machine number i,
NAME, gets the namespace ``baton-<tag>-NAME`` and a veth pair: ``bt-<6 hex>-<i>`` on the
bridge, ``eth0`` inside with 10.231.N.(2+i)/24 (``lo`` up too). The filesystem is shared,
so a ``git+file://`` lease store stays reachable whatever the network does.

A fault is an iptables DROP, first in the INPUT chain *inside* the receiving namespace,
matched by source address: ``one_way(src, dst)`` drops at dst what comes from src;
``cut(a, b)`` is both one-ways; ``isolate(name)`` cuts name from every other machine and
from the gateway. ARP is not IP, so neighbours stay resolved and a heal acts at once.
Over TCP a one-way cut breaks connections *both* ways (handshake and acks need both
directions), as any one-way loss at the IP level does; Jepsen-style tools model it so.
UDP shows the direction (see tests/system/test_faults_netns.py).

Invariants:
- every rule has the comment ``baton-netlab-<tag>``; ``heal()`` removes every fault rule
  it added and nothing else;
- the root namespace gets only two ACCEPTs for the bridge: FORWARD (with br_netfilter,
  bridged frames cross it, and Docker sets its policy to DROP) and INPUT (the gateway);
- ``close()`` (and ``__exit__``) removes every rule, veth, namespace and the bridge this
  lab made, is idempotent, and runs when setup fails halfway; it removes only what this
  lab made (recorded once its command succeeded; a name already taken is not ours);
- processes inside a namespace are the caller's to stop *before* ``close()``:
  ``ip netns delete`` kills nothing, and a namespace lives on while a process holds it.

Use::

    with NetLab(["alpha", "bravo", "charlie"]) as lab:
        for m in mesh.machines:
            lab.place(m)    # m.prefix: ip netns exec NS; m.host: its address
        ...                 # m.init(8420, 8421, ...): explicit ports; mesh.pair_up()
        lab.isolate("alpha"); lab.heal(); lab.one_way("alpha", "bravo"); lab.cut(...)
        mesh.stop()         # before the lab closes

By hand: ``python -m tools.faults.netns check`` (can this host?); ``python -m
tools.faults.netns up alpha bravo`` builds a lab, prints the addresses, then reads
``cut A B``, ``one-way A B``, ``isolate A``, ``heal``, ``quit`` from stdin. ``ip netns exec
baton-TAG-alpha iptables -S`` shows a machine's rules. If Docker's rules are legacy and
this iptables is nft (or the reverse), both apply: a legacy FORWARD DROP still drops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys

from baton.demo.devmesh import Machine

TIMEOUT_S = 30.0
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class NetLabError(RuntimeError):
    """A command failed; the message names it and carries its stderr."""


def run(*cmd: str) -> str:
    """Run ``cmd`` (check, capture, timeout); its stdout, or NetLabError."""
    line = " ".join(cmd)
    try:
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.CalledProcessError as exc:
        raise NetLabError(f"`{line}` exited {exc.returncode}: {exc.stderr.strip()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetLabError(f"`{line}` timed out after {TIMEOUT_S} s") from exc
    except OSError as exc:
        raise NetLabError(f"`{line}` could not start: {exc}") from exc
    return done.stdout


def _quiet(*cmd: str) -> None:
    """Cleanup: what is already gone is fine."""
    with contextlib.suppress(NetLabError):
        run(*cmd)


def available() -> str | None:
    """None if NetLab can run here, else the reason."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and iptables)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"baton-probe-{secrets.token_hex(3)}"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "exec", probe, "iptables", "-w", "-S")
    except NetLabError as exc:
        return f"cannot use a network namespace: {exc}"
    finally:
        _quiet("ip", "netns", "delete", probe)
    return None


def _free_subnet() -> str:
    used = "\n" + run("ip", "-o", "addr") + run("ip", "route")
    for _ in range(50):
        net = f"10.231.{secrets.randbelow(256)}"
        if f" {net}." not in used and f"\n{net}." not in used:
            return net
    raise NetLabError("no free 10.231.N.0/24 found")


class NetLab:
    """Namespaces on one bridge, with iptables faults between them (see the module)."""

    def __init__(self, names: list[str], tag: str | None = None) -> None:
        bad = [n for n in names if not NAME.fullmatch(n)]
        if bad or len(set(names)) != len(names) or not 0 < len(names) <= 250:
            raise ValueError(f"names must be 1..250 distinct [a-z0-9_-] words: {names}")
        self.id = secrets.token_hex(3)
        self.tag = tag or self.id
        if not NAME.fullmatch(self.tag):
            raise ValueError(f"tag must be a [a-z0-9_-] word: {self.tag!r}")
        self.names = list(names)
        self.bridge = f"bt-{self.id}"
        self.comment = f"baton-netlab-{self.tag}"
        self._links: list[str] = []  # the bridge, then the veths (root ends)
        self._namespaces: list[str] = []
        self._rules: list[tuple[str | None, tuple[str, ...]]] = []  # (namespace, rule)
        self._closed = False
        try:
            self._net = _free_subnet()
            self._build()
        except BaseException:
            self.close()
            raise

    @property
    def gateway(self) -> str:
        """The bridge's address, in the root namespace."""
        return f"{self._net}.1"

    def namespace(self, name: str) -> str:
        self._index(name)
        return f"baton-{self.tag}-{name}"

    def address(self, name: str) -> str:
        return f"{self._net}.{2 + self._index(name)}"

    def prefix(self, name: str) -> list[str]:
        """Runs a command inside ``name``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(name)]

    def place(self, machine: Machine) -> None:
        """Make ``machine`` (named as in the lab) run its commands and bind in its namespace."""
        machine.prefix = self.prefix(machine.name)
        machine.host = self.address(machine.name)

    def one_way(self, src: str, dst: str) -> None:
        """Packets from src are dropped on arrival at dst (over TCP: both ways broken)."""
        self._drop(dst, self.address(src))

    def cut(self, a: str, b: str) -> None:
        """No packets between a and b either way."""
        self.one_way(a, b)
        self.one_way(b, a)

    def isolate(self, name: str) -> None:
        """Cut ``name`` from every other machine and from the gateway."""
        for other in self.names:
            if other != name:
                self.cut(name, other)
        self._drop(name, self.gateway)

    def add_address(self, name: str, host: int) -> str:
        """Give ``name`` one more address, 10.231.N.``host`` (a second network, a new
        lease); the namespace's deletion takes it away."""
        if not 2 + len(self.names) <= host <= 254:
            raise ValueError(f"host must be in {2 + len(self.names)}..254 (free), got {host}")
        address = f"{self._net}.{host}"
        run("ip", "-n", self.namespace(name), "addr", "add", f"{address}/24", "dev", "eth0")
        return address

    def remove_address(self, name: str, address: str) -> None:
        """Take ``address`` from ``name`` (with add_address: a renumbering)."""
        run("ip", "-n", self.namespace(name), "addr", "del", f"{address}/24", "dev", "eth0")

    def block_port(self, name: str, address: str, port: int) -> None:
        """New TCP connections to ``address``:``port`` at ``name`` are dropped (that path
        is cut; ``name``'s own connections from that address still work)."""
        rule = ("INPUT", "-d", address, "-p", "tcp", "--dport", str(port), "-j", "DROP")
        self._add_rule(self.namespace(name), *rule)

    def heal(self) -> None:
        """Remove every fault rule this lab added (the root ACCEPTs stay until close)."""
        for namespace, rule in [r for r in self._rules if r[0] is not None]:
            run(*self._iptables(namespace), "-D", *rule)
            self._rules.remove((namespace, rule))

    def close(self) -> None:
        """Remove every rule, veth, the bridge and every namespace made; idempotent."""
        if self._closed:
            return
        self._closed = True
        for namespace, rule in reversed(self._rules):
            _quiet(*self._iptables(namespace), "-D", *rule)
        self._rules.clear()
        for link in reversed(self._links):
            _quiet("ip", "link", "delete", link)
        for namespace in self._namespaces:
            _quiet("ip", "netns", "delete", namespace)

    def __enter__(self) -> NetLab:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not in this lab ({', '.join(self.names)})") from None

    def _iptables(self, namespace: str | None) -> list[str]:
        inside = ["ip", "netns", "exec", namespace] if namespace else []
        return [*inside, "iptables", "-w"]

    def _add_rule(self, namespace: str | None, *rule: str) -> None:
        tagged = (*rule, "-m", "comment", "--comment", self.comment)
        if (namespace, tagged) not in self._rules:
            run(*self._iptables(namespace), "-I", tagged[0], "1", *tagged[1:])
            self._rules.append((namespace, tagged))

    def _drop(self, at: str, source: str) -> None:
        self._add_rule(self.namespace(at), "INPUT", "-s", source, "-j", "DROP")

    def _build(self) -> None:
        run("ip", "link", "add", self.bridge, "type", "bridge")
        self._links.append(self.bridge)
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        self._add_rule(None, "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT")
        self._add_rule(None, "INPUT", "-i", self.bridge, "-j", "ACCEPT")
        for i, name in enumerate(self.names):
            namespace, veth = self.namespace(name), f"{self.bridge}-{i}"
            run("ip", "netns", "add", namespace)
            self._namespaces.append(namespace)
            run(*f"ip link add {veth} type veth peer name eth0 netns {namespace}".split())
            self._links.append(veth)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "-n", namespace, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            run("ip", "-n", namespace, "link", "set", "eth0", "up")
            run("ip", "-n", namespace, "link", "set", "lo", "up")


def _up(lab: NetLab) -> None:
    print(f"bridge {lab.bridge}, gateway {lab.gateway}, rules tagged {lab.comment}")
    for name in lab.names:
        print(f"  {name}: {lab.address(name)}  {' '.join(lab.prefix(name))} ...")
    print("commands: cut A B | one-way SRC DST | isolate A | heal | quit")
    for line in sys.stdin:
        verb, *args = line.split() or [""]
        if verb == "quit":
            break
        try:
            if verb not in ("cut", "one-way", "isolate", "heal"):
                raise KeyError(verb)
            getattr(lab, verb.replace("-", "_"))(*args)
            print("ok")
        except (KeyError, TypeError, NetLabError) as exc:
            print(f"error: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.faults.netns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="can this host build a NetLab?")
    up = sub.add_parser("up", help="build a lab, read faults from stdin, tear it down")
    up.add_argument("names", nargs="+")
    up.add_argument("--tag")
    a = parser.parse_args(argv)
    if a.command == "check":
        reason = available()
        print(reason or "usable")
        return 1 if reason else 0
    with NetLab(a.names, a.tag) as lab, contextlib.suppress(KeyboardInterrupt):
        _up(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
