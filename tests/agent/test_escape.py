"""Control characters in text a run controls are shown, never obeyed; printable text is kept as is."""

from __future__ import annotations

import json

import pytest

from localagent.agent.escape import escape_control, json_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text: ünïcödé, 日本語, emoji 🎉", "plain text: ünïcödé, 日本語, emoji 🎉"),
        ("tab\tkept", "tab\tkept"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # colours too: no sequence reaches the terminal
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("over\rwrite", "over\\rwrite"),
        ("two\nlines", "two\\nlines"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1 csi \x9b2J nel \x85", "c1 csi \\x9b2J nel \\x85"),
        ("bidi \u202eevil\u202c isolate \u2066x\u2069", "bidi \\u202eevil\\u202c isolate \\u2066x\\u2069"),
        ("line sep \u2028 para \u2029", "line sep \\u2028 para \\u2029"),
    ],
)
def test_escape_control(raw: str, shown: str) -> None:
    assert escape_control(raw) == shown


def test_json_line_escapes_c1_and_bidi_and_round_trips() -> None:
    entry = {"text": "a\x1bb\x85c\u202ed\u2028e ü"}
    line = json_line(entry)
    assert "\n" not in line and all(ch not in line for ch in "\x1b\x85\u202e\u2028")
    assert "ü" in line, "printable text stays readable"
    assert json.loads(line) == entry
