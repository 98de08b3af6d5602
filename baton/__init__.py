"""baton: one long-lived agent across several machines, exactly one of them awake."""

__version__ = "0.1.0"

#: Version of the machine-to-machine protocol (envelopes, registry entries).
PROTOCOL_VERSION = 1
