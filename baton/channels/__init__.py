"""Channels (bundled chat service, Telegram). Arrives with the exactly-once issue."""
