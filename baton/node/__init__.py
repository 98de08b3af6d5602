"""The node process: its composition root (``root``), the parts it builds (lease,
delivery, handoff), the services facade the HTTP API calls, the supervisor that runs it,
and the client by which anything else finds and calls a home's node."""
