"""The ``micrometry`` command line: arguments reach the functions, output is as documented."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.draw import disk

from micrometry.cli import main


def test_discover_lists_samples(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "sub" / "a.png")
    assert main(["discover", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == "sub/a\tsub/a.png"


def test_calibrate_prints_one_json_line_per_image(tmp_path, capsys):
    fei = "[Scan]\nPixelWidth=2.5e-09\nPixelHeight=2.5e-09\n"
    tifffile.imwrite(tmp_path / "fei.tif", np.zeros((16, 16), np.uint8), extratags=[(34682, "s", 0, fei, True)])
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "plain.png")
    assert main(["calibrate", str(tmp_path / "fei.tif"), str(tmp_path / "plain.png")]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["source"] for x in lines] == ["metadata", "none"]
    assert lines[0]["nm_per_px"] == pytest.approx(2.5)
    assert lines[1]["nm_per_px"] is None and lines[1]["scalebar"] is None
    assert {"image", "nm_per_px", "source", "confidence", "scalebar"} <= lines[0].keys()


def test_evaluate_cli(tmp_path, capsys):
    gt = np.zeros((64, 64), np.uint16)
    gt[disk((20, 20), 8)] = 1
    gt[disk((44, 44), 8)] = 2
    pred = np.zeros_like(gt)
    pred[disk((20, 20), 8)] = 7  # same object, other id
    Image.fromarray(gt).save(tmp_path / "gt.png")
    Image.fromarray(pred).save(tmp_path / "pred.png")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(tmp_path / "gt.png"), str(tmp_path / "pred.png"), "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ap"]["0.5"] == pytest.approx(0.5)  # 1 TP, 1 FN
    assert json.loads(out.read_text())["n_gt"] == 2


def test_set_overrides_are_parsed():
    from micrometry.cli import _parse_overrides

    assert _parse_overrides(["optim.max_steps=10", "model.backbone=large", "x=1.5"]) == {
        "optim.max_steps": 10, "model.backbone": "large", "x": 1.5}
    with pytest.raises(SystemExit):
        _parse_overrides(["novalue"])
