"""The key locator gives the line of every key, whatever TOML form wrote it."""

from __future__ import annotations

from localagent.config.locate import line_of, locate_keys


def test_table_headers_and_plain_keys() -> None:
    text = '# comment\n[agent]\nname = "a"\n\n[runs]\ninherit_env = false\n'
    lines = locate_keys(text)
    assert lines[("agent",)] == 2
    assert lines[("agent", "name")] == 3
    assert lines[("runs", "inherit_env")] == 6


def test_dotted_and_quoted_keys() -> None:
    text = 'agent.name = "a"\n"runs" . \'env\'."MY.VAR" = "x"\n'
    lines = locate_keys(text)
    assert lines[("agent", "name")] == 1
    assert lines[("runs", "env", "MY.VAR")] == 2
    assert lines[("agent",)] == 1  # the tables a dotted key writes, where first written
    assert lines[("runs", "env")] == 2
    assert locate_keys("[t.k]")[("t",)] == 1  # a header writes its parent tables too


def test_inline_tables_nest() -> None:
    lines = locate_keys('[runs]\nenv = { TZ = "UTC", deep = { x = 1 } }\n')
    assert lines[("runs", "env")] == 2
    assert lines[("runs", "env", "TZ")] == 2
    assert lines[("runs", "env", "deep", "x")] == 2


def test_multiline_arrays_give_each_element_its_line() -> None:
    text = '[agent]\nlabels = [\n  "a", # first\n  "b",\n]\nmax_polls = 3\n'
    lines = locate_keys(text)
    assert lines[("agent", "labels")] == 2
    assert lines[("agent", "labels", 0)] == 3
    assert lines[("agent", "labels", 1)] == 4
    assert lines[("agent", "max_polls")] == 6


def test_strings_that_look_like_keys_are_not_keys() -> None:
    text = '[a]\ns = """\nfake = 1\n[not_a_table]\n"""\nt = \'\'\'\nx = 2\'\'\'\nu = "q\\"[b]"\nv = 1\n'
    lines = locate_keys(text)
    assert ("a", "fake") not in lines
    assert ("not_a_table",) not in lines
    assert lines[("a", "v")] == 9


def test_arrays_of_tables_are_indexed() -> None:
    text = '[[flow]]\nname = "a"\n\n[[flow]]\nname = "b"\n'
    lines = locate_keys(text)
    assert lines[("flow", 0, "name")] == 2
    assert lines[("flow", 1, "name")] == 5


def test_line_of_falls_back_to_the_closest_parent() -> None:
    lines = locate_keys('[runs.env]\nA = "1"\n')
    assert line_of(lines, ("runs", "env", "A")) == 2
    assert line_of(lines, ("runs", "env", "B")) == 1
    assert line_of(lines, ("agent", "name")) is None


def test_gives_up_quietly_on_text_it_does_not_understand() -> None:
    lines = locate_keys("a = 1\n= broken\nb = 2\n")
    assert lines == {("a",): 1}


def test_crlf_line_endings() -> None:
    lines = locate_keys('[agent]\r\nname = "a"\r\nmax_polls = 1\r\n')
    assert lines[("agent", "max_polls")] == 3
