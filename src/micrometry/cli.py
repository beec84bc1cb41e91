"""``micrometry <command>``: the command line that the Snakemake rules call.

Every subcommand is a thin wrapper over a function of the package, so all
logic is testable without Snakemake.  Heavy modules are imported inside the
subcommand that needs them: ``micrometry --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import micrometry

__all__ = ["main", "build_parser"]


def _cmd_synth(args: argparse.Namespace) -> int:
    from micrometry.train.synth import write_synthetic_dataset

    paths = write_synthetic_dataset(
        args.out, n=args.n, seed=args.seed, shape=(args.height, args.width), tiff_fraction=args.tiff_fraction
    )
    print(f"wrote {len(paths)} synthetic micrographs to {Path(args.out) / 'images'} "
          f"(ground truth in {Path(args.out) / 'truth'})")
    return 0


def _cmd_discover(args: argparse.Namespace) -> int:
    from micrometry.samples import discover_samples

    for sample, rel in discover_samples(args.input_dir).items():
        print(f"{sample}\t{rel}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from micrometry.stages import run_ingest

    attrs = run_ingest(args.image, args.store, sample=args.sample or Path(args.image).stem,
                       chunk_px=args.chunk_px, max_pixels=args.max_pixels, error_json=args.error_json)
    if attrs["status"] != "ok":
        print(f"micrometry ingest: {args.image}: {attrs['reason']} (recorded as failed sample)", file=sys.stderr)
    else:
        print(f"ingested {args.image}: {attrs['shape']} {attrs['dtype']} -> {args.store}")
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from micrometry.stages import run_calibrate

    if args.output and len(args.images) != 1:
        raise SystemExit("micrometry calibrate: --output takes exactly one IMAGE")
    if args.output:
        sample = args.sample or Path(args.images[0]).stem
        result = run_calibrate(args.images[0], args.output, sample=sample, overrides_csv=args.overrides,
                               scalebar=args.scalebar, detector_dir=args.detector, threads=args.threads)
        print(json.dumps(result))
        return 0
    from micrometry.calibrate.overrides import load_overrides
    from micrometry.calibrate.stage import calibrate_image

    overrides = load_overrides(args.overrides) if args.overrides else None
    options = {"detector_dir": args.detector, "threads": args.threads}
    status = 0
    for image in args.images:
        try:
            result = calibrate_image(image, sample=Path(image).stem, overrides=overrides, scalebar=args.scalebar,
                                     scalebar_options=options)
        except Exception as exc:  # report and go on with the next image
            print(f"micrometry calibrate: {image}: {exc}", file=sys.stderr)
            status = 1
            continue
        print(json.dumps(result))
    return status


def _cmd_segment(args: argparse.Namespace) -> int:
    from micrometry.stages import run_segment

    settings = json.loads(args.settings) if args.settings else {"method": "classical"}
    summary = run_segment(args.store, args.summary, sample=args.sample, settings=settings, roi_path=args.roi,
                          model_dir=args.model, threads=args.threads, mem_mb=args.mem_mb,
                          dask_address=args.dask_address, dask_cuda=args.dask_cuda)
    print(f"segmented {args.sample}: status {summary['status']}, {summary['n_objects']} objects")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from micrometry.stages import run_measure

    n = run_measure(args.store, args.calibration, args.segment, args.output, sample=args.sample,
                    min_confidence=args.min_confidence, use_low_confidence=args.use_low_confidence)
    print(f"measured {args.sample}: {n} objects -> {args.output}")
    if args.overlay or args.sizes:
        if not (args.overlay and args.sizes):
            raise SystemExit("micrometry measure: --overlay and --sizes go together")
        from micrometry.stages import run_qc

        run_qc(args.store, args.calibration, args.segment, args.output, args.overlay, args.sizes, sample=args.sample)
        print(f"QC figures of {args.sample}: {args.overlay}, {args.sizes}")
    return 0


def _cmd_qc(args: argparse.Namespace) -> int:
    from micrometry.stages import run_qc

    run_qc(args.store, args.calibration, args.segment, args.objects, args.overlay, args.sizes, sample=args.sample)
    return 0


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from micrometry.stages import run_aggregate

    samples = list(args.samples or [])
    if args.samples_file:
        samples += [s for s in Path(args.samples_file).read_text().splitlines() if s.strip()]
    refused: dict[str, str] = {}
    if args.inputs:
        listed = json.loads(Path(args.inputs).read_text(encoding="utf-8"))
        samples += list(listed["samples"])
        refused = dict(listed.get("refused", {}))
    params = json.loads(args.params) if args.params else None
    written = run_aggregate(samples, args.results, args.out_dir, params=params, refused=refused)
    for path in written.values():
        print(path)
    return 0


def _cmd_provenance(args: argparse.Namespace) -> int:
    from micrometry.provenance import write_run_provenance

    config = json.loads(args.config) if args.config else {}
    print(write_run_provenance(args.results, config=config))
    return 0


def _parse_overrides(pairs: list[str] | None) -> dict:
    """``["a.b=1", "c=x"]`` → ``{"a.b": 1, "c": "x"}`` (values parsed as YAML scalars)."""
    import yaml

    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"micrometry: --set expects KEY=VALUE, got {pair!r}")
        out[key] = yaml.safe_load(value)
    return out


def _cmd_train(args: argparse.Namespace) -> int:
    from micrometry.train.loop import train_from_yaml

    command = "micrometry " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("micrometry") else None
    result = train_from_yaml(args.config, args.out, _parse_overrides(args.set), command=command)
    print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str, dict, list, type(None)))},
                     default=str, indent=2))
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from micrometry.segment.onnx import export_onnx

    print(export_onnx(args.model_dir))
    return 0


def _cmd_train_scalebar(args: argparse.Namespace) -> int:
    from micrometry.train.scalebar_detector import train_detector_from_yaml

    command = "micrometry " + " ".join(sys.argv[1:])
    meta = train_detector_from_yaml(args.config, args.out, _parse_overrides(args.set), command=command)
    print(json.dumps({k: meta[k] for k in ("best_epoch", "validation", "train_seconds", "weights_sha256")}, indent=2))
    return 0


def _cmd_train_label_reader(args: argparse.Namespace) -> int:
    from micrometry.train.label_reader import train_label_reader_from_yaml

    command = "micrometry " + " ".join(sys.argv[1:])
    meta = train_label_reader_from_yaml(args.config, args.out, _parse_overrides(args.set), command=command)
    print(json.dumps({k: meta[k] for k in ("best_epoch", "validation", "train_seconds", "weights_sha256")}, indent=2))
    return 0


def _write_or_print(result: dict, out: str | None) -> None:
    from micrometry._atomic import write_json

    if out:
        write_json(out, result)
    summary = {k: result[k] for k in ("n_images", "ap", "f1@0.5", "mean_matched_iou", "n_gt", "n_pred",
                                      "seconds_per_image") if k in result}
    print(json.dumps(summary, default=str))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from micrometry.evaluate import evaluate_paths

    result = evaluate_paths(args.gt, args.pred, thresholds=tuple(args.thresholds), missing=args.missing)
    _write_or_print(result, args.output)
    return 0


def _cmd_evaluate_emps(args: argparse.Namespace) -> int:
    from micrometry.evaluate import evaluate_method_on_emps

    settings = json.loads(args.settings) if args.settings else {"method": args.method}
    settings.setdefault("method", args.method)
    result = evaluate_method_on_emps(settings, split=args.split, model_dir=args.model, threads=args.threads,
                                     limit=args.limit, thresholds=tuple(args.thresholds))
    if args.brief:
        result.pop("per_image", None)
    _write_or_print(result, args.output)
    return 0


def _add_recipe_arguments(s: argparse.ArgumentParser, default_recipe: str, out_help: str) -> None:
    """--config RECIPE, --out DIR and repeated --set KEY=VALUE of the training commands."""
    s.add_argument("--config", default=default_recipe, help="training recipe (YAML)")
    s.add_argument("--out", required=True, help=out_help)
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value (dotted key)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``micrometry`` command."""
    p = argparse.ArgumentParser(prog="micrometry", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"micrometry {micrometry.__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="render synthetic micrographs with ground truth")
    s.add_argument("out", help="output folder (images/ and truth/ are created inside)")
    s.add_argument("--n", type=int, default=8, help="number of images (default 8)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--height", type=int, default=768)
    s.add_argument("--width", type=int, default=1024)
    s.add_argument("--tiff-fraction", type=float, default=0.25,
                   help="share of images written as TIFF with FEI instrument metadata")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("discover", help="list the samples found under a folder")
    s.add_argument("input_dir")
    s.set_defaults(func=_cmd_discover)

    s = sub.add_parser("ingest", help="read one micrograph into an OME-Zarr store")
    s.add_argument("image")
    s.add_argument("store")
    s.add_argument("--sample")
    s.add_argument("--chunk-px", type=int, default=1024)
    s.add_argument("--max-pixels", type=int, default=None, help="decompression-bomb limit in pixels")
    s.add_argument("--error-json", help="where to write the error report if the file is unreadable")
    s.set_defaults(func=_cmd_ingest)

    s = sub.add_parser("calibrate", help="pixel size in nm: override, instrument metadata, scale bar")
    s.add_argument("images", nargs="+", metavar="IMAGE")
    s.add_argument("--sample", help="sample name (with --output)")
    s.add_argument("--overrides", help="CSV with columns sample,nm_per_px")
    s.add_argument("--output", help="write the JSON here instead of printing one line per image")
    s.add_argument("--scalebar", action=argparse.BooleanOptionalAction, default=True,
                   help="read the scale bar burned into the image (the source when metadata has no pixel "
                        "size, a cross-check when it has; default on)")
    s.add_argument("--detector", help="scale-bar detector directory (default models/scalebar-yolo)")
    s.add_argument("--threads", type=int, default=1, help="CPU threads for the detector and OCR")
    s.set_defaults(func=_cmd_calibrate)

    s = sub.add_parser("segment", help="segment the particles of one stored image")
    s.add_argument("store")
    s.add_argument("summary", help="summary JSON to write")
    s.add_argument("--sample", required=True)
    s.add_argument("--settings", help="JSON of the config's segment section")
    s.add_argument("--roi", help="ROI mask image, nonzero = specimen")
    s.add_argument("--model", help="flow model directory (method 'flow')")
    s.add_argument("--threads", type=int, default=1, help="CPU threads for the network")
    s.add_argument("--mem-mb", type=int, default=None, help="job memory (MiB): sizes the in-job Dask cluster")
    s.add_argument("--dask-address", default=None, help="send tiles of large images to this Dask scheduler")
    s.add_argument("--dask-cuda", action="store_true", help="in-job cluster: dask-cuda LocalCUDACluster (GPUs)")
    s.set_defaults(func=_cmd_segment)

    s = sub.add_parser("measure", help="measure objects into a Parquet table")
    s.add_argument("store")
    s.add_argument("calibration")
    s.add_argument("segment")
    s.add_argument("output")
    s.add_argument("--sample", required=True)
    s.add_argument("--min-confidence", type=float, default=0.5)
    s.add_argument("--use-low-confidence", action="store_true")
    s.add_argument("--overlay", help="also write the QC outline overlay PNG (as `micrometry qc`)")
    s.add_argument("--sizes", help="also write the per-image size distribution PNG")
    s.set_defaults(func=_cmd_measure)

    s = sub.add_parser("qc", help="outline overlay and size plot of one sample")
    s.add_argument("store")
    s.add_argument("calibration")
    s.add_argument("segment")
    s.add_argument("objects")
    s.add_argument("overlay")
    s.add_argument("sizes")
    s.add_argument("--sample", required=True)
    s.set_defaults(func=_cmd_qc)

    s = sub.add_parser("aggregate", help="dataset tables and plots")
    s.add_argument("results", help="results folder")
    s.add_argument("out_dir")
    s.add_argument("--samples", nargs="*")
    s.add_argument("--samples-file", help="file with one sample name per line")
    s.add_argument("--params", help="JSON of the aggregate settings (recorded)")
    s.add_argument("--inputs", help='JSON file {"samples": [...], "refused": {path: reason}} (the workflow\'s list)')
    s.set_defaults(func=_cmd_aggregate)

    s = sub.add_parser("provenance", help="write {results}/provenance/<timestamp>.json")
    s.add_argument("results")
    s.add_argument("--config", help="resolved config as JSON")
    s.set_defaults(func=_cmd_provenance)

    s = sub.add_parser("train", help="train the flow segmentation model")
    _add_recipe_arguments(s, "config/train.yaml", "model directory to write")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("export-onnx", help="write MODEL_DIR/model.onnx (the CPU inference graph) from its weights")
    s.add_argument("model_dir", help="flow model directory")
    s.set_defaults(func=_cmd_export_onnx)

    s = sub.add_parser("train-scalebar", help="train the scale-bar detector (YOLO) on synthetic micrographs")
    _add_recipe_arguments(s, "config/train-scalebar.yaml", "detector directory to write")
    s.set_defaults(func=_cmd_train_scalebar)

    s = sub.add_parser("train-label-reader", help="train the scale-label recognizer (CRNN + CTC) on synthetic label crops")
    _add_recipe_arguments(s, "config/train-label-reader.yaml", "reader directory to write")
    s.set_defaults(func=_cmd_train_label_reader)

    s = sub.add_parser("evaluate", help="score predicted instances against ground truth")
    s.add_argument("gt", help="label image, OME-Zarr store, or a folder of them")
    s.add_argument("pred", help="label image, OME-Zarr store, or a folder of them")
    s.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    s.add_argument("--missing", choices=["error", "skip", "empty"], default="error",
                   help="a GT sample without prediction: stop, skip it, or score it as empty")
    s.add_argument("--output", help="write the full result as JSON here")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("evaluate-emps", help="segment and score the EMPS split (by DOI)")
    s.add_argument("--method", choices=["classical", "flow"], default="flow")
    s.add_argument("--settings", help="JSON of the config's segment section (overrides --method)")
    s.add_argument("--model", help="flow model directory")
    s.add_argument("--split", choices=["val", "train"], default="val")
    s.add_argument("--limit", type=int)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    s.add_argument("--brief", action="store_true", help="leave per-image results out of the JSON")
    s.add_argument("--output", help="write the full result as JSON here")
    s.set_defaults(func=_cmd_evaluate_emps)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``micrometry`` console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
