"""What a backend needs from a model entry, and the cross-check against what the runtime reports.

A :class:`ModelSignature` is a :class:`~cxr_core.bundle.schema.ModelEntry`'s input and outputs by
role. When a backend opens the file, each tensor the runtime reports (shape, dtype,
scale/zero-point) is checked against the manifest with :func:`check_tensor`, so a bundle whose
manifest and file disagree is refused with a message naming both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cxr_core.bundle.errors import BundleError
from cxr_core.bundle.schema import INPUT_ROLE, OUTPUT_ROLES, ModelEntry, TensorSpec
from cxr_core.runtime.errors import ModelSignatureError
from cxr_core.runtime.tensors import numpy_dtype

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSignature:
    """A model's name, format, runtime family, its input and its outputs by role."""

    name: str
    format: str
    runtime: str | None
    input: TensorSpec
    outputs: dict[str, TensorSpec]

    @property
    def input_size(self) -> int:
        """H (== W) of the model input, read through its layout."""
        shape = self.input.shape
        height, width = (shape[1], shape[2]) if self.input.layout == "NHWC" else (shape[-2], shape[-1])
        if height is None or height != width:
            raise ModelSignatureError(
                f"model {self.name!r}: input shape {list(shape)} ({self.input.layout}) is not square; "
                "expected H == W"
            )
        return int(height)


def signature_of(entry: ModelEntry, where: str | Path) -> ModelSignature:
    """The input and the outputs a backend returns (``probabilities``, ``feature_map``) of ``entry``."""
    label = f"{where} (model {entry.name!r})"
    try:
        tensor_input = entry.input
    except BundleError as exc:
        raise ModelSignatureError(f"{label}: {exc}") from exc
    for spec in (tensor_input, *entry.outputs):
        numpy_dtype(spec.dtype)
    by_role: dict[str, TensorSpec] = {}
    for spec in entry.outputs:
        if spec.role not in OUTPUT_ROLES:
            logger.debug("%s: output %r has role %r; not one a backend returns", label, spec.name, spec.role)
            continue
        if spec.role in by_role:
            raise ModelSignatureError(f"{label}: two outputs have role {spec.role!r}; expected one")
        by_role[spec.role] = spec
    if "probabilities" not in by_role:
        raise ModelSignatureError(
            f"{label}: no output has role 'probabilities' (or that name); got "
            f"{[(t.name, t.role) for t in entry.outputs]}"
        )
    assert tensor_input.role == INPUT_ROLE
    return ModelSignature(
        name=entry.name, format=entry.format, runtime=entry.runtime, input=tensor_input, outputs=by_role
    )


def check_tensor(
    spec: TensorSpec,
    shape: Sequence[int | None],
    dtype: str,
    path: str | Path,
    scale: float | None = None,
    zero_point: int | None = None,
) -> TensorSpec:
    """Cross-check what the runtime reports for a tensor against the manifest; return the refined spec.

    Fixed dimensions must agree (a dynamic one on either side matches anything); the dtype must
    agree; an integer tensor's scale/zero-point from the file win, and must equal the manifest's
    when it records them.
    """
    label = f"{path}: tensor {spec.name!r} ({spec.role})"
    shape = tuple(shape)
    if len(shape) != len(spec.shape) or any(
        a is not None and b is not None and a != b for a, b in zip(spec.shape, shape, strict=True)
    ):
        raise ModelSignatureError(
            f"{label} has shape {_show(shape)} in the file; the manifest says {_show(spec.shape)}. "
            "The manifest and the model file do not belong together: re-export the bundle"
        )
    if dtype != spec.dtype:
        raise ModelSignatureError(f"{label} is {dtype} in the file; the manifest says {spec.dtype}")
    refined = replace(
        spec, shape=tuple(b if b is not None else a for a, b in zip(spec.shape, shape, strict=True))
    )
    if scale is None or not np.issubdtype(numpy_dtype(dtype), np.integer):
        return refined
    if spec.scale is not None and not np.isclose(spec.scale, scale, rtol=1e-5, atol=0.0):
        raise ModelSignatureError(
            f"{label} has scale {scale!r} in the file; the manifest says {spec.scale!r}"
        )
    if spec.zero_point is not None and zero_point is not None and spec.zero_point != zero_point:
        raise ModelSignatureError(
            f"{label} has zero point {zero_point} in the file; the manifest says {spec.zero_point}"
        )
    return replace(refined, scale=float(scale), zero_point=int(zero_point or 0))


def _show(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"
