"""${VAR}, ${VAR:-default} and $$ in config strings."""

from __future__ import annotations

import pytest

from localagent.config.interpolate import InterpolationError, interpolate, interpolate_tree


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${A}", "va"),
        ("x-${A}-y", "x-va-y"),
        ("${A}${B}", "vavb"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${EMPTY}", ""),
        ("${MISSING:-}", ""),
        ("${MISSING:-${A}}", "va"),
        ("${MISSING:-${OTHER:-deep}}", "deep"),
        ("${A:-unused}", "va"),
        ("$$", "$"),
        ("$${A}", "${A}"),
        ("$$$$", "$$"),
        ("cost $5", "cost $5"),
        ("$A", "$A"),
        ("trailing $", "trailing $"),
        ("${MISSING:-a:-b}", "a:-b"),
        ("${MISSING:-has}brace}", "has" + "brace}"),
    ],
)
def test_interpolation(text: str, expected: str) -> None:
    environ = {"A": "va", "B": "vb", "EMPTY": ""}
    assert interpolate(text, environ) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${MISSING}", "environment variable MISSING is not set"),
        ("${MISSING:-${ALSO_MISSING}}", "ALSO_MISSING is not set"),
        ("${unterminated", "unterminated"),
        ("${}", "not a variable reference"),
        ("${1ABC}", "not a variable reference"),
        ("${A B}", "not a variable reference"),
    ],
)
def test_interpolation_errors_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(InterpolationError, match=fragment.replace("$", r"\$")):
        interpolate(text, {})


def test_values_are_not_reinterpolated() -> None:
    assert interpolate("${A}", {"A": "${B}"}) == "${B}"


def test_tree_interpolates_nested_strings_and_reports_each_failure() -> None:
    tree = {"a": {"b": "${X}", "c": ["${X}", "${NOPE}"], "d": 3}, "e": "${NOPE2}"}
    result, failures = interpolate_tree(tree, {"X": "x"})
    assert result == {"a": {"b": "x", "d": 3}}
    assert [path for path, _ in failures] == [("a", "c", 1), ("e",)]
