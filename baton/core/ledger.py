"""MessageProcessingLedger: the rules (sans-IO). Adapters: baton.stores.ledger_sqlite
(SQLite, WAL, 0600) and baton.stores.ledger_memory (the twin); both pass
tests/contract/test_ledger.py.

Theory of operation: every inbound message gets one entry, keyed
``channel:topic:message_id`` (InboundMessage.key). Its state only moves forward:

    received -> processing -> reply-prepared -> reply-committed -> acked

- received: recorded from the channel (before the channel cursor may pass it).
- processing: the agent is running on it (``attempts`` counts the runs; a failed run
  records ``last_error`` and stays in processing).
- reply-prepared: the replies are fixed (texts and keys) and may be on their way.
- reply-committed: every reply is known to be delivered (committed one by one).
- acked: done; the cursor may pass it. Only acked entries are pruned.

Reply keys are deterministic: ``reply_key(ledger_key, index) = sha256(f"{key}\\n{index}")``
in hex, so every machine derives the same key for the same reply.

Markers (ReplyMarker) come from the holder over the wire and carry enough to create the
entry on a standby that never saw the message. Applying a marker only ever moves an
entry forward; a committed reply stays committed; an older or repeated marker changes
nothing (idempotent). A marker whose reply key does not match its ledger key and index
is refused (MarkerRefused).

TODO(helper): the functions below are the interface; see the issue-6 brief.
"""
