"""Pairing and membership: the host side (``host``), the joiner side (``joiner``,
``baton join``) and the signed leave request (``membership``). The rules live in
``baton.core.pairing``, the PAKE in ``baton.wire.pake``."""
