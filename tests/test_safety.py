"""Safety: sample names stay inside results_dir, nothing is ever unpickled,
YAML is safe-loaded, and the decompression-bomb limit is on and configurable."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from micrometry.io.readers import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from micrometry.samples import check_sample_name, discover_samples, safe_result_path
from micrometry.stages import errors_path, run_aggregate, run_ingest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "micrometry"


# --------------------------------------------------------------------------- sample names and result paths

UNSAFE_NAMES = [
    "..",
    "../escape",
    "a/../../escape",
    "a/..",
    "/etc/passwd",
    "//server/share",
    "a\\..\\..\\escape",
    "a\\b",
    "nul\x00byte",
    "new\nline",
    "del\x7fchar",
    "./a",
    "a//b",
    "",
]


@pytest.mark.parametrize("sample", UNSAFE_NAMES, ids=repr)
def test_unsafe_sample_names_are_refused(tmp_path, sample):
    with pytest.raises(ValueError, match="unsafe sample name"):
        check_sample_name(sample)
    with pytest.raises(ValueError, match="unsafe sample name") as info:
        errors_path(tmp_path / "results", sample)
    assert repr(sample) in str(info.value), "the message names the sample"


@pytest.mark.parametrize("sample", ["a", "plate1/img_001", "img.v2", "Probe 7 (200 kV)", "μ-grid/ß"])
def test_safe_sample_names_stay_inside(tmp_path, sample):
    results = tmp_path / "results"
    path = errors_path(results, sample)
    assert path == results / "errors" / f"{sample}.json"
    assert path.resolve().is_relative_to(results.resolve())


@pytest.mark.parametrize("parts", [
    ("errors", "../../escape.json"),
    ("errors", "a/../../../escape.json"),
    ("..", "x.json"),
    ("/etc", "passwd"),
    ("errors", "/etc/passwd"),
    ("errors", "nul\x00.json"),
    ("errors", "a\\b.json"),
    ("errors", ""),
    (".",),
    ("errors", ".."),
])
def test_safe_result_path_refuses_escapes(tmp_path, parts):
    with pytest.raises(ValueError, match="refusing"):
        safe_result_path(tmp_path / "results", *parts)


def test_safe_result_path_accepts_nested_and_normalises_lexically(tmp_path):
    results = tmp_path / "results"
    assert safe_result_path(results, "errors", "plate1/img.json") == results / "errors" / "plate1" / "img.json"
    # collapses inside results_dir: still below it, so allowed
    assert safe_result_path(results, "errors", "a/../b.json") == results / "errors" / "a/../b.json"
    with pytest.raises(ValueError, match="at least one"):
        safe_result_path(results)


def test_safe_result_path_honours_operator_symlinks(tmp_path):
    """A results sub-folder that the operator symlinked elsewhere is fine: only
    the sample-derived part of a path is constrained."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    results = tmp_path / "results"
    results.mkdir()
    (results / "images").symlink_to(scratch)
    assert safe_result_path(results, "images", "a.ome.zarr") == results / "images" / "a.ome.zarr"


def test_aggregate_refuses_unsafe_sample_before_writing(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(ValueError, match="unsafe sample name"):
        run_aggregate(["ok_one", "../../outside"], results, results / "dataset")
    assert not (results / "dataset").exists()


@pytest.mark.parametrize("filename", ["back\\slash.png", "new\nline.png", "del\x7f.png"], ids=repr)
def test_discovery_refuses_files_whose_name_is_unsafe(tmp_path, filename):
    (tmp_path / filename).write_bytes(b"x")
    with pytest.raises(ValueError, match="unsafe sample name"):
        discover_samples(tmp_path)


# --------------------------------------------------------------------------- no unpickling, safe YAML

#: Calls that can execute code from a file's content.
_FORBIDDEN_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "_pickle.load", "_pickle.loads",
    "cPickle.load", "cPickle.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
    "joblib.load", "marshal.load", "marshal.loads", "shelve.open",
    "torch.load", "torch.jit.load", "torch.hub.load", "pandas.read_pickle",
    "yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
    "eval", "exec",
}
_SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name of a call target with import aliases undone (``np.load`` → ``numpy.load``)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Calls in Python `source` that could run code from a loaded file.

    Flags pickle-based loaders (``pickle.load``, ``torch.load``,
    ``joblib.load``, ``pandas.read_pickle``, ...), ``numpy.load`` with
    ``allow_pickle`` not literally False, ``yaml.load``/``load_all`` without a
    safe Loader, the unsafe YAML loaders, and builtin ``eval``/``exec``.
    Import aliases (``import numpy as np``, ``from torch import load``) are
    followed; strings and comments are ignored.

    Returns
    -------
    list of str
        ``"file:line: call"`` for each finding.
    """
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {"np": "numpy", "pd": "pandas"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        bad = name in _FORBIDDEN_CALLS
        if name in ("yaml.load", "yaml.load_all"):
            loader = keywords.get("Loader", node.args[1] if len(node.args) > 1 else None)
            loader_name = _dotted(loader, aliases) if loader is not None else None
            bad = loader_name is None or loader_name.rsplit(".", 1)[-1] not in _SAFE_YAML_LOADERS
        if name == "numpy.load":
            allow = keywords.get("allow_pickle")
            bad = allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False)
        if bad:
            found.append(f"{filename}:{node.lineno}: {name}")
    return found


_SNIPPETS_THAT_MUST_BE_FLAGGED = [
    "import pickle\npickle.load(open('w', 'rb'))",
    "import pickle as pk\npk.loads(b'')",
    "from pickle import loads\nloads(b'')",
    "import torch\ntorch.load('w.pt')",
    "from torch import load\nload('w.pt')",
    "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
    "import numpy\nnumpy.load('a.npy', allow_pickle=flag)",
    "import yaml\nyaml.load(open('c.yaml'))",
    "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "import yaml\nyaml.load(text, yaml.FullLoader)",
    "import yaml\nyaml.unsafe_load(text)",
    "import yaml\nyaml.full_load(text)",
    "import joblib\njoblib.load('m.joblib')",
    "import pandas as pd\npd.read_pickle('t.pkl')",
    "eval(text)",
]

_SNIPPETS_THAT_ARE_FINE = [
    "import yaml\nyaml.safe_load(text)",
    "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "import yaml\nyaml.load(text, Loader=yaml.CSafeLoader)",
    "import numpy as np\nnp.load('a.npy')\nnp.load('a.npy', allow_pickle=False)",
    "from safetensors.torch import load_file\nload_file('w.safetensors')",
    "net.eval()\nmodel.load_state_dict(state)",
    "'''pickle.load(x) in a docstring'''\n# torch.load('x') in a comment",
]


@pytest.mark.parametrize("snippet", _SNIPPETS_THAT_MUST_BE_FLAGGED)
def test_scanner_flags_unsafe_loading(snippet):
    assert unsafe_calls(snippet), snippet


@pytest.mark.parametrize("snippet", _SNIPPETS_THAT_ARE_FINE)
def test_scanner_accepts_safe_loading(snippet):
    assert unsafe_calls(snippet) == []


def test_package_never_unpickles_or_unsafe_loads_yaml():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    findings = [
        f for path in files for f in unsafe_calls(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert findings == [], "unsafe loading in the package:\n" + "\n".join(findings)


def test_workflow_files_never_unpickle_or_unsafe_load_yaml():
    """Snakefile and rules are not plain Python: scan their text."""
    files = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    pattern = re.compile(
        r"pickle\.|torch\.load|joblib\.load|read_pickle|allow_pickle\s*=\s*True|yaml\.(unsafe_|full_)?load\("
    )
    findings = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in files if path.is_file()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line) and not line.lstrip().startswith("#")
    ]
    assert findings == [], "\n".join(findings)


# --------------------------------------------------------------------------- model weights: safetensors only


def _model_dir_with_weights(tmp_path: Path, weights: bytes) -> Path:
    from micrometry.segment.model import CONFIG_NAME, MODEL_FORMAT, MODEL_FORMAT_VERSION, WEIGHTS_NAME

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shipped = REPO / "models" / "flow-light" / CONFIG_NAME
    config = json.loads(shipped.read_text()) if shipped.is_file() else {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
        "architecture": {"backbone": "light"}, "train_diameter_px": 30.0,
    }
    (model_dir / WEIGHTS_NAME).write_bytes(weights)
    # the checksum matches, so the refusal must come from the format itself
    config["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    (model_dir / CONFIG_NAME).write_text(json.dumps(config))
    return model_dir


class _Trap:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_model_refuses_pickled_weights(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from micrometry.segment.model import load_model

    marker = tmp_path / "unpickled.txt"
    model_dir = _model_dir_with_weights(tmp_path, pickle.dumps({"conv.weight": _Trap(str(marker))}))
    with pytest.raises(ValueError, match="not a readable safetensors file") as info:
        load_model(model_dir)
    assert "weights.safetensors" in str(info.value) and str(model_dir) in str(info.value)
    assert not marker.exists(), "the weights file was unpickled"


def test_load_model_refuses_torch_save_checkpoint(tmp_path):
    """The most likely mistake: a ``torch.save`` checkpoint (zip + pickle) renamed."""
    torch = pytest.importorskip("torch")
    from micrometry.segment.model import load_model

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.zeros(2, 2)}, buf)
    model_dir = _model_dir_with_weights(tmp_path, buf.getvalue())
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(model_dir)


def test_load_model_refuses_replaced_weights(tmp_path):
    pytest.importorskip("torch")
    from micrometry.segment.model import WEIGHTS_NAME, load_model

    model_dir = _model_dir_with_weights(tmp_path, b"original")
    (model_dir / WEIGHTS_NAME).write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(ValueError, match="checksum"):
        load_model(model_dir)


# --------------------------------------------------------------------------- decompression-bomb limit

SHAPE = (128, 160)


@pytest.fixture
def grey_png(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint32).reshape(SHAPE).astype(np.uint8)).save(path)
    return path


def test_default_limit_matches_config_default():
    import yaml

    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    assert schema["properties"]["ingest"]["properties"]["max_pixels"]["default"] == DEFAULT_MAX_PIXELS


def test_small_limit_refuses_a_normal_image_naming_the_limit(grey_png):
    n = SHAPE[0] * SHAPE[1]
    with pytest.raises(ImageReadError) as info:
        read_image(grey_png, max_pixels=n - 1)
    text = str(info.value)
    assert str(grey_png) in text and f"limit of {n - 1} pixels" in text and "max_pixels" in text
    assert f"{SHAPE[0]} x {SHAPE[1]} = {n} pixels" in text
    assert read_image(grey_png, max_pixels=n).data.shape == SHAPE  # the limit itself is allowed


def test_none_disables_the_limit(tmp_path, grey_png):
    assert read_image(grey_png, max_pixels=None).data.shape == SHAPE


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", True])
def test_limit_must_be_none_or_a_positive_integer(grey_png, bad):
    with pytest.raises(ValueError, match="max_pixels must be a positive integer or None") as info:
        read_image(grey_png, max_pixels=bad)
    assert not isinstance(info.value, ImageReadError), "a bad limit is a configuration error, not bad input"


def test_ingest_limit_is_configurable(tmp_path, grey_png):
    err = tmp_path / "results" / "errors" / "grey.json"
    attrs = run_ingest(grey_png, tmp_path / "grey.ome.zarr", sample="grey", max_pixels=1000, error_json=err)
    assert attrs["status"] == "error" and "limit of 1000 pixels" in attrs["reason"]
    assert attrs["provenance"]["params"]["max_pixels"] == 1000
    assert json.loads(err.read_text())["reason"] == attrs["reason"]
    attrs = run_ingest(grey_png, tmp_path / "grey.ome.zarr", sample="grey", error_json=err)
    assert attrs["status"] == "ok" and attrs["provenance"]["params"]["max_pixels"] == DEFAULT_MAX_PIXELS
    assert not err.exists()


def _jpeg_declaring(path: Path, width: int, height: int) -> Path:
    import struct

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def test_pillow_limit_restored_after_success_and_failure(tmp_path, grey_png, monkeypatch):
    """read_image lifts Pillow's global limit only while it decodes, under its own
    (configurable) limit, and puts back whatever value was there, also on error."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # far below our image: ours governs
    assert read_image(grey_png).data.shape == SHAPE
    assert Image.MAX_IMAGE_PIXELS == 1000

    jpeg = tmp_path / "grey.jpg"
    Image.fromarray(np.zeros(SHAPE, np.uint8)).save(jpeg)
    assert read_image(jpeg).format == "jpeg"
    assert Image.MAX_IMAGE_PIXELS == 1000

    bomb = _jpeg_declaring(tmp_path / "bomb.jpg", 65_000, 65_000)  # refused inside the Pillow reader
    with pytest.raises(ImageReadError, match="limit of"):
        read_image(bomb)
    assert Image.MAX_IMAGE_PIXELS == 1000

    cut = tmp_path / "cut.png"
    cut.write_bytes(grey_png.read_bytes()[:200])  # fails while decoding
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(cut)
    assert Image.MAX_IMAGE_PIXELS == 1000

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # a caller's explicit choice is kept too
    read_image(grey_png)
    assert Image.MAX_IMAGE_PIXELS is None


def test_pillow_limit_stays_on_after_importing_the_package():
    code = (
        "from PIL import Image; default = Image.MAX_IMAGE_PIXELS\n"
        "import micrometry, micrometry.io.readers, micrometry.stages, micrometry.samples\n"
        "import micrometry.segment.exclusion, micrometry.aggregate.qc, micrometry.calibrate.stage\n"
        "from micrometry.io.readers import read_image\n"
        "print(default, Image.MAX_IMAGE_PIXELS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] != "None" and out[0] == out[1]
