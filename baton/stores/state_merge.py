"""StateMerge: two lines of the agent's state made one (StateSync), between the
plumbing (baton.stores.state_git) and the flows (baton.stores.state_repo).

A merge is computed with ``git merge-tree`` and an index of its own, then the tree
moves to it in one step (``reset --keep``, which never overwrites a change not yet
committed): a stop at any point leaves no half merge, and the agent never reads
conflict markers.

Invariants:
- A path both sides changed in a way git cannot merge is taken whole from the winning
  side (gone if it has none); a file one side made a directory, or a different kind
  of entry, likewise. Those paths are named; the losing side stays in the history.
- No file the winning side changed is lost to git's rename detection: one the merge
  left out is taken from the winner, and named.
- A file this machine leaves out of its commits (too big, a git repository of its own,
  unreadable) that a move would overwrite is first moved aside to ``NAME.local-TIME``
  and named: never lost, never a move that fails every tick.
"""

from __future__ import annotations

import logging
import math
import os
import time

from baton.core.errors import StateSyncError
from baton.core.state_trust import EPOCH_TRAILER
from baton.stores.git_cli import first_error_line
from baton.stores.state_git import StateGit

log = logging.getLogger("baton.state")

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's hash of an empty tree


class StateMerge(StateGit):
    def _merge(
        self, tip: str, *, epoch: int, now: float, mine_wins: bool, message: str
    ) -> list[str]:
        """Merge ``tip`` into the head, signed at ``epoch``; the winner is the head when
        ``mine_wins``, else ``tip``. The paths taken whole from the winner (and those
        moved aside) are returned."""
        head = self.head()
        if head is None:
            raise StateSyncError("nothing to merge into")
        when = max(math.floor(now), self._time(head), self._time(tip))
        dates = {"GIT_AUTHOR_DATE": f"{when} +0000", "GIT_COMMITTER_DATE": f"{when} +0000"}
        merged = self._git(
            "merge-tree", "--write-tree", "--name-only", "-z", "--allow-unrelated-histories",
            head, tip,
        )  # fmt: skip
        if merged.returncode not in (0, 1):
            raise StateSyncError(f"git merge-tree: {first_error_line(merged)}")
        tree, conflicts, moved = merge_output(merged.stdout)
        winner = head if mine_wins else tip
        tree, conflicts = self._take_whole(tree, conflicts, moved, winner, self._base(head, tip))
        text = f"{message}\n\n{EPOCH_TRAILER}: {epoch}\n"
        made = self._ok(
            "commit-tree", "-S", "-p", head, "-p", tip, "-m", text, tree, env=dates
        ).strip()
        self.moved_aside = self._clear_way(made)
        self._ok("reset", "-q", "--keep", made)  # a change in the way: the next tick
        self._made()
        return sorted({*conflicts, *self.moved_aside})

    def _base(self, head: str, tip: str) -> str:
        proc = self._git("merge-base", head, tip)
        return proc.stdout.strip() or EMPTY_TREE if proc.returncode == 0 else EMPTY_TREE

    def _take_whole(
        self, tree: str, conflicts: list[str], moved: list[str], winner: str, base: str
    ) -> tuple[str, list[str]]:
        """``tree`` with each conflicting path (and all under it) as ``winner`` has it,
        or gone if it has none, git's moved-aside copies (``moved``) gone, and every
        file the winner changed since ``base`` that the merge left out put back; the
        tree and the paths so taken."""
        index = self.git_dir / "baton-merge.index"
        index.unlink(missing_ok=True)  # one a stop left
        env = {"GIT_INDEX_FILE": str(index), "GIT_LITERAL_PATHSPECS": "1"}
        try:
            self._ok("read-tree", tree, env=env)
            present = {p for p in self._ok("ls-files", "-z", env=env).split("\0") if p}
            listed = [e for e in self._ok("ls-tree", "-r", "-z", winner).split("\0") if e]
            theirs = {e.split("\t", 1)[1] for e in listed}
            changed = self._ok("diff", "--no-renames", "--name-only", "-z", base, winner)
            lost = {p for p in changed.split("\0") if p in theirs and p not in present}
            taken = sorted({*conflicts, *lost})
            if not taken and not moved:
                return tree, []

            def under(path: str) -> bool:
                return any(path == p or path.startswith(p + "/") for p in taken)

            drop = [p for p in present if under(p) or p in moved]
            if drop:
                spec = "\0".join(drop)
                self._ok("update-index", "-z", "--force-remove", "--stdin", input=spec, env=env)
            keep = [e for e in listed if under(e.split("\t", 1)[1])]
            if keep:
                spec = "\0".join(keep) + "\0"
                self._ok("update-index", "-z", "--index-info", input=spec, env=env)
            return self._ok("write-tree", env=env).strip(), taken
        finally:
            index.unlink(missing_ok=True)

    def _clear_way(self, target: str) -> list[str]:
        """Move aside what this machine leaves out of its commits where moving the tree
        to ``target`` would write: ``NAME.local-TIME``, named in the log."""
        left = [*self.too_big, *self.nested, *self.unreadable]
        if not left:
            return []
        diff = self._ok("diff", "--no-renames", "--name-only", "-z", "HEAD", target)
        coming = [d for d in diff.split("\0") if d]
        aside = []
        for path in left:
            if any(d == path or d.startswith(path + "/") for d in coming):
                kept = f"{path}.local-{int(time.time())}"
                try:
                    os.rename(self.tree / path, self.tree / kept)
                except FileNotFoundError:
                    continue
                log.warning("%s is not synced and the state brings its own: kept as %s", path, kept)
                aside.append(path)
        return aside


def merge_output(out: str) -> tuple[str, list[str], list[str]]:
    """What ``git merge-tree --write-tree --name-only -z`` said: the merged tree, the
    paths in conflict, named by their own path where git moved a copy aside (``d~HEAD``
    in a file/directory or a distinct-kinds conflict), and those moved-aside copies."""
    fields = out.split("\0")
    tree, rest = fields[0], fields[1:]
    end = rest.index("") if "" in rest else len(rest)
    listed, messages = rest[:end], rest[end + 1 :]
    moved: dict[str, str] = {}
    i = 0
    while i < len(messages) and messages[i].isdigit():
        n = int(messages[i])
        paths = messages[i + 1 : i + 1 + n]
        for copy, own in (paths, paths[::-1]) if len(paths) == 2 else ():
            if copy.startswith(own + "~"):  # git's copy of ``own``, moved aside
                moved[copy] = own
        i += n + 3
    conflicts = sorted({moved.get(p, p) for p in listed})
    return tree, conflicts, sorted(moved)
