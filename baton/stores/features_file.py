"""The component flags on disk (``data/features.json``, 0600, written atomically): the
last signed FeatureFlags this machine took or set. A file that does not read is named
in the log and left where it is; the machine starts with every component on and the
holder's next flags replace it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from baton.core import safejson
from baton.core.errors import FeatureError, MalformedFlags
from baton.core.features import FeatureFlags
from baton.stores.files import atomic_write

log = logging.getLogger("baton.features")


class FeatureFlagsFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> FeatureFlags:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return FeatureFlags()
        except OSError as exc:
            log.error("features: cannot read %s (%s): every component on", self.path, exc)
            return FeatureFlags()
        try:
            return FeatureFlags.from_dict(safejson.loads(data))
        except (ValueError, MalformedFlags) as exc:
            log.error("features: %s does not read (%s): every component on", self.path, exc)
            return FeatureFlags()

    def keep(self, flags: FeatureFlags) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(flags.to_dict()).encode())
        except OSError as exc:
            raise FeatureError(f"cannot write {self.path}: {exc.strerror}") from exc
