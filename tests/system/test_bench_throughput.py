"""tools/bench/throughput.py, head_of_line.py and pool.py run end to end with tiny
parameters: every message is answered and the JSON they print has what the issue asks
for (no timing limits)."""

from __future__ import annotations

import json

import pytest

from tools.bench import head_of_line, pool, throughput


@pytest.mark.system
@pytest.mark.timeout(120)
def test_the_throughput_benchmark_reports_both_modes_and_their_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--runs", "1", "--messages", "20", "--paced", "10", "--rate", "20", "--json"]
    assert throughput.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    for mode in ("on", "off"):
        assert result[mode]["median_rps"] > 0
        [run] = result[mode]["runs"]
        assert run["rps"] > 0 and run["sends"] >= 20
    assert result["ratio"] > 0
    assert result["on"]["runs"][0]["fenced"] and result["on"]["runs"][0]["standby_markers"] == 20
    assert (
        not result["off"]["runs"][0]["fenced"] and result["off"]["runs"][0]["standby_markers"] == 0
    )
    assert result["parameters"]["messages"] == 20 and result["machine"]["cores"] >= 1
    for mode in ("on", "off"):  # each paced message timed from its post to its reply
        lat = result[mode]["latency"]
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["max_ms"], lat


@pytest.mark.system
@pytest.mark.timeout(180)
def test_the_head_of_line_benchmark_times_the_other_topics_in_every_variant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert head_of_line.main(["--stall-s", "1", "--rate", "10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for variant in head_of_line.VARIANTS:
        others = result[variant]["others"]
        assert result[variant]["messages"] == 10 and 0 < others["p50_ms"] <= others["max_ms"]
    assert "stalled_ms" not in result["baseline"]
    assert result["stalled"]["stalled_ms"] >= 1000 and result["before"]["stalled_ms"] >= 1000


@pytest.mark.system
@pytest.mark.timeout(300)
def test_the_pool_benchmark_reports_both_modes_and_the_move_latency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--runs", "1", "--messages", "16", "--work-ms", "50", "--moves", "1", "--json"]
    assert pool.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    rates = result["replies_per_s"]
    assert rates["on"] > 0 and rates["off"] > 0 and rates["on/off"] > 0, result
    assert result["moves"] == 1 and result["move_ms"]["median"] > 0, result
