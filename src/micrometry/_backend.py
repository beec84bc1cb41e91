"""The one place where a compute back-end is chosen.

Every array kernel that exists in more than one implementation (NumPy
reference, Numba on CPU, CuPy on GPU) is registered here by name and back-end,
and callers ask for a *kernel table*: ``get_kernels("auto").follow_flows(...)``.
There are no scattered ``if gpu:`` branches elsewhere.

Back-ends
---------
``"numpy"``
    The reference implementation.  Always available; the oracle that the
    other back-ends are tested against.
``"numba"``
    Parallel CPU kernels compiled with ``numba.njit(parallel=True,
    fastmath=False)``.  Available when :mod:`numba` imports.
``"cupy"``
    Fused CUDA kernels (``cupy.RawKernel``).  Available when :mod:`cupy`
    imports and sees at least one CUDA device.
``"auto"``
    The first available of ``cupy``, ``numba``, ``numpy``.

Nothing heavy is imported by this module: Numba and CuPy are imported the
first time a kernel table that needs them is built, and the table is then
cached for the life of the process.

Registering kernels
-------------------
A module that provides kernels decorates zero-argument *builders*::

    @register_kernel("follow_flows", "numba")
    def _build_follow_flows_numba():
        import numba
        ...
        return kernel

and is listed in ``_KERNEL_MODULES`` so that :func:`get_kernels` imports it
before building a table.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

__all__ = [
    "BACKENDS",
    "KernelTable",
    "available_backends",
    "backend_available",
    "get_kernels",
    "register_kernel",
    "resolve_backend",
]

BACKENDS: tuple[str, ...] = ("numpy", "numba", "cupy")
"""Every back-end name, in order of increasing setup cost."""

_AUTO_ORDER: tuple[str, ...] = ("cupy", "numba", "numpy")

_KERNEL_MODULES: tuple[str, ...] = ("micrometry.segment.tracking",)
"""Modules that register kernels; imported before a table is built."""

# kernel name -> backend -> zero-argument builder returning the callable
_BUILDERS: dict[str, dict[str, Callable[[], Callable[..., Any]]]] = {}


def register_kernel(name: str, backend: str) -> Callable[[Callable[[], Callable[..., Any]]], Callable[[], Callable[..., Any]]]:
    """Register a builder for kernel `name` on `backend` (decorator).

    Parameters
    ----------
    name : str
        Kernel name, the attribute under which it appears in a
        :class:`KernelTable`.
    backend : {"numpy", "numba", "cupy"}
        Back-end the builder's kernel runs on.

    Returns
    -------
    decorator
        Registers a zero-argument function that imports what it needs and
        returns the kernel callable; the function itself is returned unchanged.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

    def decorator(builder: Callable[[], Callable[..., Any]]) -> Callable[[], Callable[..., Any]]:
        _BUILDERS.setdefault(name, {})[backend] = builder
        return builder

    return decorator


@functools.cache
def backend_available(backend: str) -> bool:
    """Whether `backend` can run here (the answer is cached per process).

    Parameters
    ----------
    backend : {"numpy", "numba", "cupy"}

    Returns
    -------
    bool
        ``"numpy"``: always True.  ``"numba"``: :mod:`numba` imports.
        ``"cupy"``: :mod:`cupy` imports and reports at least one CUDA device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    if backend == "numpy":
        return True
    if backend == "numba":
        try:
            importlib.import_module("numba")
        except Exception:  # ImportError, or a numba/numpy version mismatch
            return False
        return True
    try:
        cupy = importlib.import_module("cupy")
        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # no cupy, no driver, no device
        return False


def available_backends() -> tuple[str, ...]:
    """Names of the back-ends usable in this process, in :data:`BACKENDS` order."""
    return tuple(b for b in BACKENDS if backend_available(b))


def resolve_backend(backend: str = "auto") -> str:
    """Turn a requested back-end into a concrete, available one.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba", "cupy"}
        ``"auto"`` picks CuPy if a CUDA device is usable, else Numba if it
        imports, else NumPy.

    Returns
    -------
    str
        One of :data:`BACKENDS`.

    Raises
    ------
    ValueError
        Unknown name, or a named back-end that is not available here (the
        message says why and what is available).
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    name = backend.lower()
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if backend_available(candidate):
                return candidate
        return "numpy"  # pragma: no cover - numpy is always available
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected 'auto' or one of {BACKENDS}")
    if not backend_available(name):
        why = "numba is not installed" if name == "numba" else "cupy is not installed or sees no CUDA device"
        raise ValueError(f"backend {name!r} is not available ({why}); available: {available_backends()}")
    return name


class KernelTable:
    """The kernels of one back-end, as attributes (``table.follow_flows``).

    Attributes
    ----------
    backend : str
        The concrete back-end name.
    names : tuple of str
        Registered kernel names available in this table.
    """

    def __init__(self, backend: str, kernels: dict[str, Callable[..., Any]]):
        self.backend = backend
        self._kernels = dict(kernels)
        self.names = tuple(sorted(self._kernels))

    def __getattr__(self, name: str) -> Callable[..., Any]:
        kernels = self.__dict__.get("_kernels", {})
        if name in kernels:
            return kernels[name]
        raise AttributeError(f"backend {self.__dict__.get('backend')!r} has no kernel {name!r}")

    def __getitem__(self, name: str) -> Callable[..., Any]:
        return getattr(self, name)

    def __repr__(self) -> str:
        return f"KernelTable(backend={self.backend!r}, kernels={list(self.names)})"


@functools.cache
def _build_table(backend: str) -> KernelTable:
    for module in _KERNEL_MODULES:
        importlib.import_module(module)
    kernels = {name: by_backend[backend]() for name, by_backend in sorted(_BUILDERS.items()) if backend in by_backend}
    return KernelTable(backend, kernels)


def get_kernels(backend: str = "auto") -> KernelTable:
    """The kernel table of a back-end, built once per process.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba", "cupy"}
        Resolved with :func:`resolve_backend`.

    Returns
    -------
    KernelTable
        ``table.backend`` is the concrete back-end; each registered kernel is
        an attribute.  Numba kernels are compiled (or loaded from Numba's
        on-disk cache) and CUDA kernels are compiled when first called.

    Examples
    --------
    >>> from micrometry._backend import get_kernels
    >>> get_kernels("numpy").backend
    'numpy'
    """
    return _build_table(resolve_backend(backend))
