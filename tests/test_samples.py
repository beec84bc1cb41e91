import pytest

from micrometry.samples import SampleDiscoveryError, check_sample_name, discover_inputs, discover_samples


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_discover_nested_and_extensions(tmp_path):
    for rel in ["a.png", "b.TIF", "plate1/img_001.tif", "plate1/deep/x.dm4", "notes.txt", ".hidden.png",
                ".snap/c.png", "old.ome.zarr/0.png", "img.v2.jpeg"]:
        _touch(tmp_path / rel)
    samples = discover_samples(tmp_path)
    assert samples == {
        "a": "a.png",
        "b": "b.TIF",
        "img.v2": "img.v2.jpeg",
        "plate1/deep/x": "plate1/deep/x.dm4",
        "plate1/img_001": "plate1/img_001.tif",
    }


def test_collision_names_both_files(tmp_path):
    _touch(tmp_path / "a.png")
    _touch(tmp_path / "a.tif")
    with pytest.raises(SampleDiscoveryError, match=r"a\.png.*a\.tif"):
        discover_samples(tmp_path)


def test_discover_inputs_sets_aside_files_that_cannot_become_a_sample(tmp_path):
    """A nightly run must not stop on them: both files of a collision (neither has the
    better claim) and a name with a backslash or a newline are refused with a reason,
    the other files are samples."""
    for rel in ["a.png", "a.tif", "plate/b.png", "c\\d.png", "e\nf.tif"]:
        _touch(tmp_path / rel)
    samples, refused = discover_inputs(tmp_path)
    assert samples == {"plate/b": "plate/b.png"}
    assert sorted(refused) == sorted(["a.png", "a.tif", "c\\d.png", "e\nf.tif"])
    assert "'a.png', 'a.tif'" in refused["a.png"] and "sample 'a'" in refused["a.tif"]
    assert "unsafe sample name" in refused["c\\d.png"] and "rename" in refused["e\nf.tif"]
    with pytest.raises(SampleDiscoveryError, match="unsafe|would all become"):
        discover_samples(tmp_path)


def test_exclude_dirs(tmp_path):
    _touch(tmp_path / "keep/a.png")
    _touch(tmp_path / "results/qc/a.png")
    assert discover_samples(tmp_path, exclude_dirs=("results",)) == {"keep/a": "keep/a.png"}


def test_missing_input_dir(tmp_path):
    with pytest.raises(SampleDiscoveryError, match="does not exist"):
        discover_samples(tmp_path / "nope")


@pytest.mark.parametrize("bad", ["", "/abs/x", "../x", "a/../../x", "a//b", "a\\b", "./a"])
def test_unsafe_sample_names(bad):
    with pytest.raises(ValueError, match="unsafe sample name"):
        check_sample_name(bad)


def test_safe_sample_name():
    assert check_sample_name("plate1/img_001") == "plate1/img_001"
