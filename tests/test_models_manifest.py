"""models/manifest.yaml lists every shipped model with the SHA-256 of the weights in the repository."""

from pathlib import Path

import yaml

from micrometry.io.readers import sha256_file

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = {"flow": "weights.safetensors", "detector": "model.safetensors", "label-reader": "model.safetensors"}


def test_manifest_matches_the_model_directories():
    manifest = yaml.safe_load((REPO / "models" / "manifest.yaml").read_text())["models"]
    dirs = sorted(p.name for p in (REPO / "models").iterdir() if p.is_dir())
    assert sorted(manifest) == dirs
    for name, entry in manifest.items():
        folder = REPO / entry["path"]
        assert folder.name == name
        weights = folder / WEIGHTS[entry["kind"]]
        assert sha256_file(weights) == entry["sha256"], f"{name}: manifest sha256 is stale"
        assert weights.stat().st_size == entry["weights_bytes"]
        assert weights.stat().st_size < 50e6  # weight files stay small
        assert (REPO / entry["card"]).is_file()
