"""The flow network as an ONNX graph, run by ONNX Runtime on CPU.

Why: on CPU, ONNX Runtime runs the light network as fast as PyTorch eager on
small inputs and 2.4-3x faster from about 1024 x 1024 px on (fused
convolution + batch-norm + ReLU, no per-layer Python), with the same outputs
to ~1e-5 (``benchmarks/segment_speed.py``).  PyTorch stays the runtime for
GPUs and for training.

Files: ``model.onnx`` in the model directory is *derived* from
``weights.safetensors`` by :func:`export_onnx` (``micrometry export-onnx
MODEL_DIR``; ``micrometry train`` writes it too).  Its metadata records the
SHA-256 of the weights it was exported from; :class:`OnnxNetwork` refuses a
file whose record does not match the model's weights, so a retrained model
never runs with a stale graph.  An ONNX file is a protobuf graph with its
tensors: loading one executes no code (nothing is unpickled).

Shapes: the graph takes ``(1, 1, Y, X)`` float32 with ``Y`` and ``X``
multiples of the network's ``size_multiple``; :class:`OnnxNetwork` pads
like :meth:`micrometry.segment.network.FlowNet.forward` (reflect, replicate
for tiny inputs) and crops back, so both runtimes see the same pixels.

:mod:`onnx` is needed only to export; running needs :mod:`onnxruntime`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from micrometry._atomic import atomic_path

__all__ = ["ONNX_NAME", "RUNTIMES", "OnnxNetwork", "OnnxUnavailable", "export_onnx",
           "pad_to_multiple"]

log = logging.getLogger(__name__)

#: File name of the exported graph inside a model directory.
ONNX_NAME = "model.onnx"
#: Network runtimes understood by :func:`micrometry.segment.dispatch.load_flow_model`.
RUNTIMES: tuple[str, ...] = ("auto", "torch", "onnxruntime")
_OPSET = 17
#: Largest difference to the PyTorch outputs accepted when exporting.
_EXPORT_TOLERANCE = 1e-3


def pad_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad a (Y, X) image at the bottom/right to multiples of `multiple`.

    Same rule as :meth:`micrometry.segment.network.FlowNet.forward`: reflect,
    or replicate when the padding is not smaller than the side.

    Returns
    -------
    (Y', X') ndarray
        `image` itself when no padding is needed.
    """
    ny, nx = image.shape
    pad_y, pad_x = (-ny) % multiple, (-nx) % multiple
    if not (pad_y or pad_x):
        return image
    mode = "reflect" if pad_y < ny and pad_x < nx else "edge"
    return np.pad(image, ((0, pad_y), (0, pad_x)), mode=mode)


class OnnxUnavailable(ValueError):
    """The ONNX graph cannot be used: missing, unreadable, stale, or no onnxruntime (the message says which)."""


class OnnxNetwork:
    """The flow network's ONNX graph in an ONNX Runtime session (CPU).

    Parameters
    ----------
    path : path
        The ``model.onnx`` file.
    weights_sha256 : str
        SHA-256 of the weights the caller's model uses; the file's recorded
        one must match.
    threads : int
        Intra-op threads of the session.

    Raises
    ------
    OnnxUnavailable
        No such file, :mod:`onnxruntime` not installed, not a readable ONNX
        model, or exported from other weights.

    Notes
    -----
    Picklable (for Dask workers): the session is rebuilt from `path` on first
    use after unpickling.
    """

    def __init__(self, path: str | os.PathLike, *, weights_sha256: str, threads: int = 1) -> None:
        self.path = Path(path)
        self.weights_sha256 = str(weights_sha256)
        self.threads = max(1, int(threads))
        self._session: Any = None
        self.size_multiple = 1
        self._open()

    def _open(self) -> None:
        if not self.path.is_file():
            raise OnnxUnavailable(
                f"no {self.path.name} in {self.path.parent} (write one with `micrometry export-onnx {self.path.parent}`)"
            )
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxUnavailable("onnxruntime is not installed (pip install 'micrometry[flow]')") from exc

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # no busy-waiting between runs: the same process resizes, tracks (Numba) and runs
        # PyTorch right after each call, and spinning ORT threads would take their cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any load failure makes the file unusable
            raise OnnxUnavailable(f"{self.path}: not a readable ONNX model ({exc})") from exc
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("weights_sha256") != self.weights_sha256:
            raise OnnxUnavailable(
                f"{self.path} was exported from weights {meta.get('weights_sha256', '(unrecorded)')[:12]}..., "
                f"not this model's {self.weights_sha256[:12]}... (re-export with `micrometry export-onnx "
                f"{self.path.parent}`)"
            )
        self.size_multiple = int(meta.get("size_multiple", "1"))
        self._input = session.get_inputs()[0].name
        self._session = session

    def __getstate__(self) -> dict:
        return {"path": self.path, "weights_sha256": self.weights_sha256, "threads": self.threads,
                "size_multiple": self.size_multiple}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._session = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Raw network outputs of one normalised image.

        Parameters
        ----------
        image : (Y, X) float32 ndarray

        Returns
        -------
        (4, Y, X) float32 ndarray
            Foreground logit, flow_y, flow_x, distance (as ``FlowNet``).
        """
        if self._session is None:
            self._open()
        ny, nx = image.shape
        x = pad_to_multiple(np.asarray(image, dtype=np.float32), self.size_multiple)
        out = self._session.run(None, {self._input: np.ascontiguousarray(x)[None, None]})[0]
        return np.ascontiguousarray(out[0, :, :ny, :nx])


def export_onnx(model_dir: str | os.PathLike, *, opset: int = _OPSET) -> Path:
    """Export a model directory's network to ``model_dir/model.onnx``.

    The graph is traced from the PyTorch network (eval mode: batch-norm uses
    its running statistics) with dynamic height and width, checked against
    PyTorch on a test image (largest difference below 1e-3, else nothing is
    written) and written atomically with the weights' SHA-256, the
    network's size multiple and the versions used in its metadata.

    Parameters
    ----------
    model_dir : path
        A model directory (:func:`micrometry.segment.model.save_model`).
    opset : int
        ONNX opset.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ImportError
        :mod:`onnx` or :mod:`onnxruntime` is not installed.
    RuntimeError
        ONNX Runtime's outputs differ from PyTorch's.
    """
    import io
    import warnings

    import torch

    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - part of the flow extra
        raise ImportError("exporting to ONNX needs the onnx package (pip install 'micrometry[flow]')") from exc
    import onnxruntime as ort

    from micrometry import __version__
    from micrometry.segment.model import load_model, model_sha256

    model_dir = Path(model_dir)
    model = load_model(model_dir, device="cpu")
    net = model.net.eval().to(memory_format=torch.contiguous_format)
    m = int(net.size_multiple)
    example = torch.from_numpy(np.random.default_rng(0).random((1, 1, 16 * m, 12 * m), dtype=np.float32))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the (untaken) padding branch
        torch.onnx.export(
            net, (example,), buf, dynamo=False, opset_version=int(opset),
            input_names=["image"], output_names=["outputs"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "outputs": {2: "height", 3: "width"}},
        )
    graph = onnx.load_from_string(buf.getvalue())
    meta = {
        "format": "micrometry-flow-model-onnx",
        "weights_sha256": model_sha256(model_dir),
        "size_multiple": str(m),
        "micrometry_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
    }
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    data = graph.SerializeToString()
    # check on another shape than the traced one (dynamic axes really dynamic)
    check = np.random.default_rng(1).random((10 * m, 7 * m), dtype=np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": check[None, None]})[0]
    with torch.inference_mode():
        ref = net(torch.from_numpy(check)[None, None]).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff < _EXPORT_TOLERANCE:
        raise RuntimeError(f"ONNX export of {model_dir}: outputs differ from PyTorch by {diff:.3g}; nothing written")
    out = model_dir / ONNX_NAME
    with atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
        os.chmod(tmp, 0o644)
    log.info("wrote %s (largest difference to PyTorch %.2g)", out, diff)
    return out
