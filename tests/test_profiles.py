"""The shipped Snakemake profiles: valid YAML with the settings the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.parent.name for p in (REPO / "profiles").glob("*/config.yaml"))


def test_profiles_present():
    assert {"default", "slurm", "slurm-gpu"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_resumes_and_skips_same_content(name):
    cfg = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
    assert cfg["keep-going"] is True and cfg["rerun-incomplete"] is True
    # re-copied micrographs (same bytes, new mtime) must not rerun: checksums up to GBs
    from humanfriendly import parse_size

    assert parse_size(str(cfg["max-checksum-file-size"])) >= 2**31
    assert set(cfg["rerun-triggers"]) == {"mtime", "params", "input", "software-env", "code"}


def test_slurm_profiles_size_segment():
    cpu = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    gpu = yaml.safe_load((REPO / "profiles" / "slurm-gpu" / "config.yaml").read_text())
    assert cpu["executor"] == gpu["executor"] == "slurm"
    for cfg in (cpu, gpu):
        seg = cfg["set-resources"]["segment"]
        assert seg["mem_mb"] >= 4000 and seg["runtime"] > 0
    assert cpu["set-resources"]["segment"]["gpu"] == 0 and gpu["set-resources"]["segment"]["gpu"] == 1
