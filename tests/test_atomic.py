import json

import pytest

from micrometry._atomic import atomic_dir, atomic_path, write_json


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_replaces_whole(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_write_json_nan_is_null(tmp_path):
    write_json(tmp_path / "a" / "b.json", {"x": float("nan"), "y": [1.5, float("inf")]})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": None, "y": [1.5, None]}
