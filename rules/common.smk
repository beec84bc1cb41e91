# Helpers shared by all rules: sample discovery, paths, stage parameters.
import json
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from micrometry._versions import STAGE_VERSIONS
from micrometry.samples import discover_inputs

INPUT_DIR = Path(config["input_dir"])
RESULTS = config["results_dir"]
# files that cannot become a sample (an unsafe name, two files for one sample name) are
# set aside with their reason, not allowed to stop the run: they become error rows of
# dataset/images.parquet
SAMPLES, REFUSED_INPUTS = discover_inputs(INPUT_DIR, exclude_dirs=tuple(config["exclude_dirs"]))
for _reason in REFUSED_INPUTS.values():
    logger.warning(f"micrometry: {_reason}")
if config["calibration"]["overrides_csv"]:
    from micrometry.calibrate.overrides import load_overrides

    CALIBRATION_OVERRIDES = load_overrides(config["calibration"]["overrides_csv"])
else:
    CALIBRATION_OVERRIDES = {}


wildcard_constraints:
    sample=r"[^\\]+",


def raw_image(wildcards):
    """Input micrograph of one sample."""
    return str(INPUT_DIR / SAMPLES[wildcards.sample])


def roi_mask(wildcards):
    """The sample's ROI mask ({roi_dir}/{sample}.png/.tif) if one exists, else nothing."""
    roi_dir = config["segment"]["roi_dir"]
    if not roi_dir:
        return []
    for ext in (".png", ".tif", ".tiff"):
        path = Path(roi_dir) / f"{wildcards.sample}{ext}"
        if path.exists():
            return [str(path)]
    return []


def as_json(obj):
    """Compact, key-sorted JSON: stable text for params and shell arguments."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def workflow_path(value):
    """A configured path, relative ones resolved against the workflow folder."""
    path = Path(value)
    return path if path.is_absolute() else Path(workflow.basedir) / path


def model_dir():
    """The flow model's directory."""
    return workflow_path(config["segment"]["flow"]["model"])


def segment_model():
    """Weights file of the configured flow model (an input of segment), or nothing."""
    if config["segment"]["method"] != "flow":
        return []
    return [str(model_dir() / "weights.safetensors"), str(model_dir() / "config.json")]


def model_arg(wildcards, input):
    """`--model DIR` for a rule whose `model` input is the weights file (empty without one)."""
    return f"--model {Path(input.model[0]).parent}" if input.model else ""


def dask_option():
    """Where the segment jobs send their tiles: an existing scheduler, dask-cuda, or
    (empty) a LocalCluster inside the job."""
    if config["dask"]["address"]:
        return f"--dask-address {shlex.quote(str(config['dask']['address']))}"
    return "--dask-cuda" if config["dask"]["cuda"] else ""


def segment_model_sha256():
    """SHA-256 of the flow model's weights: a new model reruns segment and what follows."""
    if config["segment"]["method"] != "flow":
        return "none"
    from micrometry.segment.model import model_sha256

    return model_sha256(model_dir())


def detector_dir():
    """The scale-bar detector's directory."""
    return workflow_path(config["calibration"]["scalebar_detector"])


DEFAULT_DETECTOR = "models/scalebar-yolo"


def calibrate_detector_sha256():
    """SHA-256 of the detector's weights: a new detector reruns calibrate and what follows.

    The detector is a param, not an input of every calibrate job (two inputs more per image
    cost planning time at facility scale); a missing detector stops the run at start-up.
    """
    if not config["calibration"]["scalebar"]:
        return "none"
    from micrometry.calibrate.scalebar.detect import detector_sha256

    sha = detector_sha256(detector_dir())
    if sha is None:
        raise WorkflowError(
            f"calibration.scalebar is on but the scale-bar detector {detector_dir()} has no weights; "
            "set calibration.scalebar_detector or calibration.scalebar: false"
        )
    return sha


def calibrate_label_reader_sha256():
    """SHA-256 of the scale-label reader's weights (models/scalebar-label-reader, the last step of
    the reading chain): new weights rerun calibrate and what follows; "none" without it."""
    if not config["calibration"]["scalebar"]:
        return "none"
    from micrometry.calibrate.scalebar.label_reader import reader_sha256

    return reader_sha256() or "none"


def detector_option():
    """`--detector DIR` for a non-default detector; the default (models/scalebar-yolo of
    this workflow) is found by the package itself, so a moved or re-cloned workflow folder
    does not change the param (a param change would rerun every calibrate job)."""
    value = config["calibration"]["scalebar_detector"]
    return "" if value == DEFAULT_DETECTOR else f"--detector {shlex.quote(str(detector_dir()))}"


def segment_settings():
    """What should rerun the segment stage: its section of the config without roi_dir
    (a changed ROI file reruns it through its input instead) and without the block of
    the method not in use."""
    settings = {k: v for k, v in config["segment"].items() if k != "roi_dir"}
    unused = {"classical": "flow", "flow": "classical"}[settings["method"]]
    settings.pop(unused, None)  # the other method's block must not trigger reruns
    return as_json(settings)


def get_final_output():
    """Everything `rule all` asks for."""
    out = [
        f"{RESULTS}/dataset/objects.parquet",
        f"{RESULTS}/dataset/images.parquet",
    ]
    out += expand(f"{RESULTS}/qc/{{sample}}.png", sample=SAMPLES)
    return out


def start_run():
    """Lock the results directory for this run (a second concurrent run stops with a
    message naming the first), then write {results}/provenance/<timestamp>.json."""
    from micrometry.provenance import write_run_provenance
    from micrometry.runlock import acquire_results_lock

    acquire_results_lock(RESULTS)
    write_run_provenance(RESULTS, config=config)


def calibration_override(wildcards):
    """The sample's own row of the overrides table (nm/px, or "none"): editing the table
    reruns calibrate only for the samples whose row changed."""
    value = CALIBRATION_OVERRIDES.get(wildcards.sample)
    return "none" if value is None else repr(float(value))
