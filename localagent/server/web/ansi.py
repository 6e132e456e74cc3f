"""ANSI colour codes in run output, rendered as CSS classes; every other escape sequence dropped.

Usage::

    ansi_html("\\x1b[31mred\\x1b[0m <b>")   # Markup('<span class="a-f1">red</span> &lt;b&gt;')

The text between codes is always escaped; only class names this module writes reach the page. The same rules
are applied in the browser by ``static/live.js`` to lines that arrive live.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# CSI sequences (ESC [ params final), OSC sequences (ESC ] ... BEL or ESC \), and any other lone ESC + char.
_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _apply_sgr(params: str, classes: dict[str, str]) -> None:
    codes = [int(part) if part.isdigit() else 0 for part in params.split(";")] if params else [0]
    index = 0
    while index < len(codes):
        code = codes[index]
        if code == 0:
            classes.clear()
        elif code == 1:
            classes["weight"] = "a-b"
        elif code == 2:
            classes["weight"] = "a-d"
        elif code in (22,):
            classes.pop("weight", None)
        elif code == 3:
            classes["italic"] = "a-i"
        elif code == 23:
            classes.pop("italic", None)
        elif code == 4:
            classes["underline"] = "a-u"
        elif code == 24:
            classes.pop("underline", None)
        elif 30 <= code <= 37 or 90 <= code <= 97:
            classes["fg"] = f"a-f{code - 30 if code < 90 else code - 82}"
        elif code == 39:
            classes.pop("fg", None)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            classes["bg"] = f"a-g{code - 40 if code < 100 else code - 92}"
        elif code == 49:
            classes.pop("bg", None)
        elif code in (38, 48):
            # 256-colour and RGB colours are not mapped: skip their arguments so they are not read as codes.
            index += 2 if index + 1 < len(codes) and codes[index + 1] == 5 else 4
        index += 1


def ansi_html(text: str) -> Markup:
    """``text`` escaped, with SGR colours as ``<span class="a-...">`` and other escapes and controls removed."""
    if "\x1b" not in text:
        return escape(_CONTROL.sub("", text))
    parts: list[str] = []
    classes: dict[str, str] = {}
    position = 0
    for match in _ESCAPE.finditer(text):
        _emit(parts, text[position : match.start()], classes)
        if match.group(2) == "m":
            _apply_sgr(match.group(1) or "", classes)
        position = match.end()
    _emit(parts, text[position:], classes)
    return Markup("".join(parts))


def _emit(parts: list[str], chunk: str, classes: dict[str, str]) -> None:
    chunk = _CONTROL.sub("", chunk)
    if not chunk:
        return
    if classes:
        names = " ".join(sorted(classes.values()))
        parts.append(f'<span class="{names}">{escape(chunk)}</span>')
    else:
        parts.append(str(escape(chunk)))
