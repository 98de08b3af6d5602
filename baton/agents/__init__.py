"""Agents and their worker-process runner. Arrives with the exactly-once issue."""
