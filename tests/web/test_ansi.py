"""ANSI colour codes become classes; the text around them is always escaped."""

from __future__ import annotations

from localagent.server.web.ansi import ansi_html
from localagent.server.web.security import is_loopback_host, safe_next


def test_plain_text_is_escaped() -> None:
    assert ansi_html("<script>alert(1)</script> & x") == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; x"


def test_sgr_codes_become_classes_and_reset() -> None:
    assert ansi_html("\x1b[1;32mok\x1b[0m done") == '<span class="a-b a-f2">ok</span> done'
    assert ansi_html("\x1b[91mbright\x1b[39m") == '<span class="a-f9">bright</span>'


def test_other_escapes_and_controls_are_dropped() -> None:
    # 38;5;196 is a 256-colour code: skipped whole, so "196" is not read as a code of its own.
    assert (
        ansi_html("a\x1b[2Kb\x1b]0;title\x07c\x07d\x1b[38;5;196me\x1b[38;5;1;4mf") == 'abcde<span class="a-u">f</span>'
    )


def test_class_names_never_carry_text() -> None:
    assert ansi_html('\x1b[31m"><img src=x>') == '<span class="a-f1">&#34;&gt;&lt;img src=x&gt;</span>'


def test_login_targets_stay_on_this_server() -> None:
    assert safe_next("/runs/abc?line=3") == "/runs/abc?line=3"
    for target in ("//evil.example", "https://evil.example", "/\\evil.example", "", None):
        assert safe_next(target) == "/"


def test_loopback_host_names() -> None:
    assert all(is_loopback_host(h) for h in ("127.0.0.1:4300", "localhost", "[::1]:80", "127.0.0.2"))
    assert not any(is_loopback_host(h) for h in ("evil.example", "10.0.0.1:80", ""))
