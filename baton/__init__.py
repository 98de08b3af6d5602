"""baton: one long-lived agent across several machines, exactly one of them awake."""

__version__ = "0.1.0"

#: The newest version of the machine-to-machine protocol (envelopes, registry entries)
#: this build speaks, and the oldest (baton.core.versions: the mesh runs at one).
PROTOCOL_VERSION = 1
PROTOCOL_MIN = 1
