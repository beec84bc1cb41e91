"""CuPy back-end of flow tracking against the NumPy reference (needs a CUDA GPU)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from micrometry._backend import backend_available  # noqa: E402
from micrometry.segment.flows import flows_to_labels, labels_to_flows  # noqa: E402
from micrometry.segment.tracking import follow_flows  # noqa: E402

if not backend_available("cupy"):
    pytest.skip("cupy sees no CUDA device", allow_module_level=True)


def _scene(shape=(512, 512), n=400, seed=0):
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.int32)
    power = np.full(shape, np.inf)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    placed = 0
    for _ in range(20 * n):
        r = rng.uniform(4, 16)
        c = rng.uniform(r, np.array(shape) - 1 - r)
        y0, y1 = int(c[0] - r) - 1, int(c[0] + r) + 2
        x0, x1 = int(c[1] - r) - 1, int(c[1] + r) + 2
        window = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
        d2 = (yy[window] - c[0]) ** 2 + (xx[window] - c[1]) ** 2
        if np.any((d2 <= (0.8 * r) ** 2) & (lab[window] > 0)):
            continue
        placed += 1
        take = (d2 <= r * r) & (d2 - r * r < power[window])
        power[window][take] = (d2 - r * r)[take]
        lab[window][take] = placed
        if placed == n:
            break
    return lab


def test_cupy_endpoints_match_numpy():
    lab = _scene()
    flows, _ = labels_to_flows(lab)
    fg = lab > 0
    for n_iter, step in [(0, 1.0), (1, 1.0), (50, 1.0), (200, 1.0), (80, 0.6)]:
        ref = follow_flows(flows, fg, n_iter=n_iter, step_px=step, backend="numpy")
        got = follow_flows(flows, fg, n_iter=n_iter, step_px=step, backend="cupy")
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-4)
    rng = np.random.default_rng(1)
    noisy = (flows + rng.normal(scale=0.3, size=flows.shape)).astype(np.float32)
    np.testing.assert_allclose(
        follow_flows(noisy, fg, n_iter=120, backend="cupy"), follow_flows(noisy, fg, n_iter=120, backend="numpy"), atol=1e-4
    )


def test_cupy_labels_match_numpy_and_truth():
    lab = _scene()
    flows, _ = labels_to_flows(lab)
    fg = lab > 0
    ref = flows_to_labels(flows, fg, backend="numpy")
    got = flows_to_labels(flows, fg, backend="cupy")
    assert (ref == got).mean() > 0.999
    assert got.max() == lab.max()


def test_cupy_accepts_device_arrays_and_starts():
    lab = _scene(shape=(128, 128), n=30)
    flows, _ = labels_to_flows(lab)
    from micrometry._backend import get_kernels

    starts = np.stack(np.nonzero(lab)).astype(np.float32)
    host = get_kernels("numpy").follow_flows(flows, starts, 60, 1.0)
    dev = get_kernels("cupy").follow_flows(cupy.asarray(flows), cupy.asarray(starts), 60, 1.0)
    assert isinstance(dev, np.ndarray)
    np.testing.assert_allclose(dev, host, atol=1e-4)
