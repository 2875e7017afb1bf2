"""README's options table is `options_table()`, the one place each option is defined."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynamo_modelopt.config import options_table

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def test_readme_options_table_is_generated_from_the_config() -> None:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        pytest.skip(f"README.md has no {BEGIN} ... {END} markers to hold the options table yet")
    between = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert between.strip() == options_table().strip(), (
        "README's options table is stale: paste dynamo_modelopt.config.options_table() "
        "between its markers"
    )


def test_options_table_has_one_line_per_option() -> None:
    import dataclasses

    from dynamo_modelopt.config import ModeloptConfig

    rows = options_table().strip().splitlines()[2:]
    names = [f.name for f in dataclasses.fields(ModeloptConfig)]
    assert [row.split("|")[1].strip().strip("`") for row in rows] == names
    assert all(row.count("|") == 4 for row in rows)  # no cell breaks the table
