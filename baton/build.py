"""This build of baton: its version and the wire protocol versions it speaks
(baton.core.versions)."""

from __future__ import annotations

from baton import PROTOCOL_MIN, PROTOCOL_VERSION, __version__
from baton.core.versions import Versions

THIS = Versions(__version__, (PROTOCOL_MIN, PROTOCOL_VERSION))
