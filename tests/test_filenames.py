"""Names from user data cannot escape the output folder (leaps.filenames)."""

from __future__ import annotations

import os

import pytest

from leaps.errors import LeapsError
from leaps.filenames import MAX_NAME_BYTES, inside, safe_name, unique_names

HOSTILE = ["../../x", "a/b", "a\\b", "con", "CON.txt", "nul", "x" * 300, "..", ".", "", "/etc/passwd",
           "tab\there", "nl\nx", "\x00zero", "-rf", ".hidden", "é" * 200, "<script>alert(1)</script>", "C:\\win"]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_safe_name_is_one_harmless_component(tmp_path, name):
    clean = safe_name(name)
    assert clean and clean not in (".", "..")
    assert "/" not in clean and "\\" not in clean and os.sep not in clean
    assert not any(ord(c) < 32 for c in clean)
    assert not clean.startswith((".", "-"))
    assert clean.split(".")[0].lower() not in {"con", "nul", "prn", "aux"}
    assert len(clean.encode()) <= MAX_NAME_BYTES
    # it really is a file name inside the folder
    path = tmp_path / clean
    path.write_text("x")
    assert path.parent == tmp_path


def test_plain_names_are_kept():
    for name in ("juggling balls", "ring_growing", "slow_r50", "abseiling-1.mp4"):
        assert safe_name(name) == name


def test_changed_names_do_not_collide():
    assert safe_name("a/b") != safe_name("a?b")
    assert safe_name("x" * 300) != safe_name("x" * 301)


def test_unique_names_differ_case_insensitively():
    names = unique_names(["Run", "run", "RUN", "a/b", "a_b", "a_b"])
    assert len({n.lower() for n in names}) == len(names)
    assert names[0] == "Run"
    assert unique_names(["Run", "run"]) == unique_names(["Run", "run"])  # deterministic


def test_inside_refuses_escapes(tmp_path):
    assert inside(tmp_path, "a", "b.mp4") == (tmp_path / "a" / "b.mp4").resolve()
    with pytest.raises(LeapsError, match="outside the output folder"):
        inside(tmp_path, "..", "x")
    with pytest.raises(LeapsError):
        inside(tmp_path, "/etc/passwd")
    link = tmp_path / "link"
    link.symlink_to(tmp_path.parent)
    with pytest.raises(LeapsError):
        inside(tmp_path, "link", "x")
