import json
import os

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


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    import subprocess
    import sys

    from micrometry._atomic import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # that process has ended
    target = tmp_path / "out.json"
    stale_file = tmp_path / f".out.json.tmp-{pid}-abc"
    stale_file.write_text("half")
    live = tmp_path / f".out.json.tmp-{os.getppid()}-xyz"  # a live process's temporary is kept
    live.write_text("busy")
    other = tmp_path / f".other.json.tmp-{pid}-abc"  # another target's is not ours to remove
    other.write_text("x")
    with atomic_path(target) as tmp:
        tmp.write_text("{}")
    assert target.read_text() == "{}" and not stale_file.exists() and live.exists() and other.exists()
    stale_dir = tmp_path / f".store.zarr.tmp-{pid}-q"
    (stale_dir / "sub").mkdir(parents=True)
    with atomic_dir(tmp_path / "store.zarr") as tmp:
        (tmp / "a").write_text("1")
    assert not stale_dir.exists() and (tmp_path / "store.zarr" / "a").exists()
    assert remove_stale_temporaries(tmp_path / "missing" / "x") == []
