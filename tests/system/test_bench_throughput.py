"""tools/bench/throughput.py runs end to end with tiny parameters: both modes answer
every message and the JSON it prints has what the issue asks for (no timing limits)."""

from __future__ import annotations

import json

import pytest

from tools.bench import throughput


@pytest.mark.system
@pytest.mark.timeout(120)
def test_the_throughput_benchmark_reports_both_modes_and_their_ratio(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert throughput.main(["--runs", "1", "--messages", "20", "--json"]) == 0
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
