"""``baton demo`` and its kit: the scenario, its live view, the run kit the demo and the
chaos campaign share, the checker (verdict) and devmesh, which starts real machines for
the demo, the chaos campaign, the benchmarks and the system tests."""
