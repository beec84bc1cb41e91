import pytest

from micrometry.samples import SampleDiscoveryError, check_sample_name, discover_samples


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
