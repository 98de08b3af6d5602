"""safejson.loads: json.loads with a depth limit; every refusal is a ValueError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core import safejson
from baton.core.safejson import MAX_DEPTH, TooDeep


def nested(depth: int, kind: str = "[") -> str:
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("kind", ["[", "{"])
@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3_000, 100_000])
def test_a_document_past_the_limit_is_refused_as_a_value_error(kind: str, depth: int) -> None:
    with pytest.raises(TooDeep) as info:
        safejson.loads(nested(depth, kind))
    assert isinstance(info.value, ValueError) and str(MAX_DEPTH) in str(info.value)


@pytest.mark.parametrize("kind", ["[", "{"])
def test_a_document_at_the_limit_parses(kind: str) -> None:
    assert safejson.loads(nested(MAX_DEPTH, kind)) == json.loads(nested(MAX_DEPTH, kind))


def test_depth_counts_the_deepest_branch_not_the_widest() -> None:
    wide = json.dumps([[1] * 1000, {"a": [[2]]}])
    assert safejson.loads(wide, max_depth=4)[1] == {"a": [[2]]}
    with pytest.raises(TooDeep):
        safejson.loads(wide, max_depth=3)


def test_keyword_arguments_reach_the_parser_and_bytes_are_accepted() -> None:
    def no_constant(name: str) -> None:
        raise ValueError(f"no {name}")

    with pytest.raises(ValueError, match="no NaN"):
        safejson.loads(b"[NaN]", parse_constant=no_constant)
    assert safejson.loads(b'"x"') == "x" and safejson.loads("5") == 5


def test_a_huge_integer_literal_is_a_value_error_too() -> None:
    with pytest.raises(ValueError):
        safejson.loads("1" * 10_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=20,
)


@given(json_values)
def test_whatever_json_parses_within_the_limit_parses_the_same(doc: object) -> None:
    assert safejson.loads(json.dumps(doc)) == doc
