"""Text a run controls, made safe for the agent's console and log: control characters shown, never obeyed.

A run's output reaches the agent's console (``logs.show_flow_logs``). Printed raw, an escape sequence could
set the terminal's title or clear the screen, a carriage return could overwrite the ``[flow/run]`` prefix,
and a line feed inside a long line or a C1 control could start a line that looks like the agent's own log.
So every character that is not printable text is shown escaped: C0 controls (tab excepted), DEL, C1
controls, and the invisible characters that reorder or break lines (bidi overrides and isolates, the line
and paragraph separators). ESC becomes ``\\x1b``, CR ``\\r``, U+202E ``\\u202e``.

Usage::

    escape_control("\\x1b]0;pwned\\x07done")  # -> "\\\\x1b]0;pwned\\\\x07done"
    json_line({"text": "a\\u0085b"})         # -> '{"text": "a\\\\u0085b"}', every such character \\u-escaped
"""

from __future__ import annotations

import json
import re
from typing import Any

# Not printable: C0 (tab kept), DEL, C1; bidi embeddings/overrides/isolates, LRM/RLM/ALM; U+2028/U+2029.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\r": "\\r", "\n": "\\n", "\x1b": "\\x1b"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_control(text: str) -> str:
    """``text`` with every control and line-breaking or reordering character shown as an escape."""
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_line(entry: dict[str, Any]) -> str:
    """One JSON object on one line; the characters :func:`escape_control` escapes are ``\\u`` escapes.

    ``json.dumps`` escapes C0 controls already; C1 controls and bidi characters are valid raw JSON but
    would still reach a terminal that shows the log, so they are escaped too.
    """
    text = json.dumps(entry, default=str, ensure_ascii=False)
    return _UNSAFE.sub(_json_escape, text) if _UNSAFE.search(text) else text
