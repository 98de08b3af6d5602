"""Persistence and local files: the home layout, identity, config, registry, run files."""
