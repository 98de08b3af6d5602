"""Settings for every test: hypothesis examples have no deadline (a test must pass on a
loaded 2-core machine; speed is measured by tools/bench, never asserted here)."""

from hypothesis import settings

settings.register_profile("baton", deadline=None)
settings.load_profile("baton")
