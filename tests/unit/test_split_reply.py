"""split_reply: a reply longer than Telegram takes goes out as parts that each fit."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from baton.core.delivery import MAX_REPLY_UNITS, split_replies, split_reply, utf16_units


def test_a_short_reply_is_one_part() -> None:
    assert split_reply("hello") == ["hello"]
    assert split_reply("x" * MAX_REPLY_UNITS) == ["x" * MAX_REPLY_UNITS]


def test_5000_characters_of_paragraphs_split_at_a_paragraph() -> None:
    first, second = "a" * 3000, "b" * 1999
    parts = split_reply(f"{first}\n\n{second}")
    assert parts == [first, second]


def test_lines_then_words_then_a_hard_cut() -> None:
    assert split_reply("a" * 3000 + "\n" + "b" * 3000) == ["a" * 3000, "b" * 3000]
    assert split_reply("a" * 3000 + " " + "b" * 3000) == ["a" * 3000, "b" * 3000]
    assert split_reply("c" * 5000) == ["c" * 4096, "c" * 904]


def test_characters_outside_the_bmp_count_two_units_and_are_never_cut_in_half() -> None:
    text = "\U0001f600" * 3000  # 6000 UTF-16 units, 3000 characters
    parts = split_reply(text)
    assert [utf16_units(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_a_three_part_reply_whose_middle_part_is_long_keeps_its_order() -> None:
    middle = "m" * 4000 + "\n" + "n" * 4000
    assert split_replies(["one", middle, "three"]) == ("one", "m" * 4000, "n" * 4000, "three")


def test_the_limit_must_hold_a_character() -> None:
    with pytest.raises(ValueError):
        split_reply("abc", 1)


@given(
    st.text(alphabet=st.sampled_from(["a", "b", " ", "\n", "é", "\U0001f600"]), min_size=1),
    st.integers(2, 64),
)
def test_every_part_fits_none_is_blank_and_only_whitespace_is_lost(text: str, limit: int) -> None:
    if not text.strip():
        text = "x" + text
    parts = split_reply(text, limit)
    assert parts and all(utf16_units(p) <= limit and p.strip() for p in parts)
    squeeze = re.compile(r"\s+")
    assert squeeze.sub("", "".join(parts)) == squeeze.sub("", text)
