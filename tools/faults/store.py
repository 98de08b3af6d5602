"""A slow or failing git lease store: a pre-receive hook on the bare repository (the
mesh's real remote) that reads a control file on every push.

    store = StoreFaults(Path("/tmp/mesh/lease.git"))
    store.slow(1.5)     # every push waits 1.5 s before it is decided
    store.fail()        # every push is refused ("[remote rejected]"): baton sees an
                        # unreachable store, never a lost compare-and-swap
    store.heal()

The hook is installed on first use and stays (an empty control file means no fault);
fetches are not slowed, only the writes that decide the lease. A delay longer than the
store's push timeout (5 s) is an unreachable store too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

HOOK = """#!/bin/sh
# baton tools/faults/store.py: slow or refuse pushes while the control file says so
control="{control}"
[ -s "$control" ] || exit 0
delay=$(sed -n 's/.*"delay_s": *\\([0-9.]*\\).*/\\1/p' "$control")
[ -n "$delay" ] && sleep "$delay"
grep -q '"fail": *true' "$control" && {{ echo "refused by tools/faults/store.py" >&2; exit 1; }}
exit 0
"""


class StoreFaults:
    def __init__(self, bare_repo: Path) -> None:
        self.repo = bare_repo
        self.control = bare_repo / "baton-faults.json"

    def _install(self) -> None:
        hook = self.repo / "hooks" / "pre-receive"
        hook.parent.mkdir(exist_ok=True)
        hook.write_text(HOOK.format(control=self.control))
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def _set(self, plan: dict[str, object]) -> None:
        self._install()
        tmp = self.control.with_name(self.control.name + ".tmp")
        tmp.write_text(json.dumps(plan) if plan else "")
        os.replace(tmp, self.control)

    def slow(self, delay_s: float) -> None:
        self._set({"delay_s": round(delay_s, 3)})

    def fail(self) -> None:
        self._set({"fail": True})

    def heal(self) -> None:
        self._set({})
