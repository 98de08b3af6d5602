"""Settings for every test: hypothesis examples have no deadline (a test must pass on a
loaded 2-core machine; speed is measured by tools/bench, never asserted here).

xdist hands tests out one at a time (``--maxschedchunk=1`` in pyproject.toml), so a
free worker takes the next one, instead of a chunk of long system tests ending the run
on one worker while the others idle. They keep the collection's order: started
longest first, the heaviest system tests ran all at once and starved each other."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("baton", deadline=None)
settings.load_profile("baton")
