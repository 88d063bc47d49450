"""Atomic small-file writes (``jaxnas.files``)."""

import os

import pytest

from jaxnas.files import write_text


def test_write_text_creates_parents_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "x.json"
    write_text(path, "one\n")
    assert path.read_text(encoding="utf-8") == "one\n"
    write_text(str(path), "two")  # a str path, an existing file: replaced whole
    assert path.read_text(encoding="utf-8") == "two"
    assert os.listdir(path.parent) == ["x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    write_text(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text(path, "new")
    assert path.read_text(encoding="utf-8") == "old"
