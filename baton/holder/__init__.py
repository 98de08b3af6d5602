"""The holder's safety parts: the LeaseGate ("may I act, and at which epoch?"), the
FencedOutbox (the only way to send a reply), the ChannelPoller and its cursor, and the
FenceProbe. Each acts only while the lease says this machine holds it."""
