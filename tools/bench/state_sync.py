"""Benchmark: the agent's state from the holder's tree to a standby's verified checkout
(StateSync), with real git, real SSH signatures and a bare repository on disk as the
remote.

- ``change``: one changed file, from the holder's commit (signed) and push to the
  standby's pull (fetch, verification of the commit, checkout), ``--changes`` times; the
  node adds up to one ``state_sync_ms`` (2 s by default) of waiting for each side's tick.
- ``verify``: the cost of verification per commit, from pulls of ``--batch`` commits at
  once (git checks each signature with ssh-keygen; the rules are then pure).

Medians and p95 in ms. ``--load N`` runs N busy processes beside it.

    python -m tools.bench.state_sync [--changes 30] [--batch 50] [--load 0] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import git

from baton.core.registry import entry_from_card
from baton.core.state_trust import signer_windows
from baton.stores.home import HomePaths
from baton.stores.identity_store import create_home
from baton.stores.state_repo import StateRepo
from tools.bench.timing import busy, report, summary

EPOCH = 1


def measure(root: Path, changes: int, batch: int) -> dict[str, list[float]]:
    remote = root / "remote.git"
    git.Repo.init(remote, bare=True).close()
    repos, entries = [], []
    for name in ("holder", "standby"):
        identity = create_home(root / name, name)
        repos.append(StateRepo(HomePaths(root / name), identity, f"file://{remote}"))
        card = {
            **identity.public.to_dict(),
            "wire": "tcp://127.0.0.1:1",
            "http": "http://127.0.0.1:2",
        }
        entries.append(entry_from_card(card, time.time() - 60))
    holder, standby = repos
    windows = signer_windows(entries)
    times: dict[str, list[float]] = {"commit_push": [], "pull": [], "change": [], "verify": []}
    for i in range(changes):
        (holder.tree / "notes.txt").write_text(f"change {i}\n")
        t0 = time.perf_counter()
        if holder.commit(epoch=EPOCH, now=time.time(), message="bench") is None:
            raise RuntimeError("nothing committed")
        if not holder.push():
            raise RuntimeError("push refused")
        t1 = time.perf_counter()
        if standby.pull(windows, EPOCH, now=time.time()).taken != 1:
            raise RuntimeError("the standby did not take the change")
        t2 = time.perf_counter()
        times["commit_push"].append((t1 - t0) * 1000)
        times["pull"].append((t2 - t1) * 1000)
        times["change"].append((t2 - t0) * 1000)
    for round_ in range(3):
        for i in range(batch):
            (holder.tree / "notes.txt").write_text(f"batch {round_} {i}\n")
            holder.commit(epoch=EPOCH, now=time.time(), message="bench")
        holder.push()
        t0 = time.perf_counter()
        if standby.pull(windows, EPOCH, now=time.time()).taken != batch:
            raise RuntimeError("the standby did not take the batch")
        times["verify"].append((time.perf_counter() - t0) * 1000 / batch)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--load", type=int, default=0, help="busy processes beside it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with busy(args.load), tempfile.TemporaryDirectory(prefix="baton-bench-") as root:
        times = measure(Path(root), args.changes, args.batch)
    result = {"changes": args.changes, "batch": args.batch, "load": args.load, **summary(times)}
    title = "agent state, holder to verified standby checkout (ms; verify: per commit):"
    report(result, title, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
