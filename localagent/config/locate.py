"""Where each key of a TOML document is written: the line numbers tomllib does not give.

Usage::

    lines = locate_keys('[agent]\\nname = "a"\\n')
    lines[("agent", "name")]  # 2

The scanner understands table headers, arrays of tables (``[[flow]]`` gives ``("flow", 0, ...)``),
dotted and quoted keys, inline tables, multi-line arrays (each element gets its own entry, keyed by
its index) and every string form, so text inside strings and comments is never mistaken for a key.
It runs only on documents tomllib already accepted, but it never raises: on anything it does not
understand it stops and returns what it found so far.
"""

from __future__ import annotations

import contextlib

KeyPath = tuple[str | int, ...]

_BARE_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_SCALAR_STOP = frozenset(",]}#\n\r")


class _StopScan(Exception):
    """The text stopped making sense to the scanner; keep what was found."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.found: dict[KeyPath, int] = {}
        self._table_array_counts: dict[KeyPath, int] = {}
        self._counted_to = 0  # newlines before this position are counted in _counted_lines
        self._counted_lines = 1

    @property
    def line(self) -> int:
        # Counted from the last position asked about, so that a document's lines cost one pass in all.
        if self.pos < self._counted_to:
            self._counted_to, self._counted_lines = 0, 1
        self._counted_lines += self.text.count("\n", self._counted_to, self.pos)
        self._counted_to = self.pos
        return self._counted_lines

    def peek(self, length: int = 1) -> str:
        return self.text[self.pos : self.pos + length]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _StopScan
        self.pos += 1

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces and tabs; with ``newlines`` also line breaks and comments."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif newlines and char == "#":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def document(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.peek(2) == "[[":
                table = self.table_header(array=True)
            elif self.peek() == "[":
                table = self.table_header(array=False)
            else:
                self.key_value(table)

    def table_header(self, array: bool) -> KeyPath:
        line = self.line
        self.pos += 2 if array else 1
        self.skip_blank(newlines=False)
        path: KeyPath = tuple(self.key())
        self.skip_blank(newlines=False)
        self.expect("]")
        for end in range(1, len(path)):  # `[a.b]` also writes table `a` here, when first seen
            self.found.setdefault(path[:end], line)
        if array:
            self.expect("]")
            index = self._table_array_counts.get(path, 0)
            self._table_array_counts[path] = index + 1
            self.found.setdefault(path, line)
            path = (*path, index)
        self.found.setdefault(path, line)
        return path

    def key_value(self, table: KeyPath) -> None:
        line = self.line
        path: KeyPath = (*table, *self.key())
        self.skip_blank(newlines=False)
        self.expect("=")
        self.skip_blank(newlines=False)
        for end in range(len(table) + 1, len(path)):  # `a.b = 1` also writes table `a` here, when first seen
            self.found.setdefault(path[:end], line)
        self.found[path] = line
        self.value(path)

    def key(self) -> list[str]:
        parts = [self.simple_key()]
        while True:
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1
            self.skip_blank(newlines=False)
            parts.append(self.simple_key())

    def simple_key(self) -> str:
        char = self.peek()
        if char in ('"', "'"):
            return self.string()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _BARE_KEY_CHARS:
            self.pos += 1
        if self.pos == start:
            raise _StopScan
        return self.text[start : self.pos]

    def value(self, path: KeyPath) -> None:
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] not in _SCALAR_STOP:
                self.pos += 1
            if self.pos == start:
                raise _StopScan

    def array(self, path: KeyPath) -> None:
        self.expect("[")
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "]":
                self.pos += 1
                return
            element: KeyPath = (*path, index)
            self.found[element] = self.line
            self.value(element)
            index += 1
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise _StopScan

    def inline_table(self, path: KeyPath) -> None:
        self.expect("{")
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "}":
                self.pos += 1
                return
            self.key_value(path)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "}":
                raise _StopScan

    def string(self) -> str:
        """Skip a string of any of the four kinds and return its (roughly unescaped) content."""
        quote = self.peek()
        if self.peek(3) == quote * 3:
            self.pos += 3
            end = self._find_closing(quote * 3, escapes=quote == '"')
            # A multi-line string may end with up to two extra quotes before the delimiter.
            while self.text[end + 3 : end + 4] == quote:
                end += 1
            content = self.text[self.pos : end]
            self.pos = end + 3
            return content
        self.pos += 1
        end = self._find_closing(quote, escapes=quote == '"')
        content = self.text[self.pos : end]
        self.pos = end + 1
        return _unescape(content) if quote == '"' else content

    def _find_closing(self, delimiter: str, escapes: bool) -> int:
        pos = self.pos
        while True:
            end = self.text.find(delimiter, pos)
            if end < 0:
                raise _StopScan
            if escapes:
                backslashes = 0
                while end - backslashes - 1 >= self.pos and self.text[end - backslashes - 1] == "\\":
                    backslashes += 1
                if backslashes % 2:
                    pos = end + 1
                    continue
            return end


def _unescape(content: str) -> str:
    if "\\" not in content:
        return content
    simple = {'"': '"', "\\": "\\", "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b"}
    out: list[str] = []
    i = 0
    while i < len(content):
        char = content[i]
        if char == "\\" and i + 1 < len(content):
            code = content[i + 1]
            width = {"u": 4, "U": 8, "x": 2}.get(code)
            if code in simple:
                out.append(simple[code])
                i += 2
                continue
            if width is not None:
                try:
                    out.append(chr(int(content[i + 2 : i + 2 + width], 16)))
                except ValueError:
                    out.append(content[i : i + 2 + width])
                i += 2 + width
                continue
        out.append(char)
        i += 1
    return "".join(out)


def locate_keys(text: str) -> dict[KeyPath, int]:
    """Map every key path written in ``text`` (and every array element) to its 1-based line."""
    scanner = _Scanner(text)
    with contextlib.suppress(_StopScan, IndexError):
        scanner.document()
    return scanner.found


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, else of its closest written parent (a table header or dotted prefix)."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None
