"""Runtime settings a backend is opened with: thread-pool behaviour and graph optimisation.

The defaults are the ones measured sensible for a shared or battery-powered device
(docs/runtime.md, "Runtime settings"): ONNX Runtime's idle intra-op threads sleep instead of
spinning, no thread is pinned to a core, every graph optimisation is on, LiteRT runs with XNNPACK.
``edge-bench --ab`` measures the alternatives side by side and ``edge-bench --tune`` may pick
another combination for one device (:mod:`cxr_core.runtime.tuning`).

What each costs:

* ``spinning=True``: ONNX Runtime's worker threads busy-wait between operators instead of sleeping,
  during an inference only (``session.force_spinning_stop``: they stop as soon as it returns, so
  nothing spins between images; without it they spun on for a while after each inference, 23 ms of
  CPU per idle half second measured). It saves the wake-up latency between DenseNet's ~250 small
  operators, so a dedicated kiosk may gain, but during the inference it keeps every worker core at
  100%: more CPU (battery) per image, and on a machine whose cores other work shares it steals
  their time.
* ``affinity=True``: pins ONNX Runtime's worker threads to one logical CPU each (the main thread
  is the caller's). Steadier caches on a dedicated device; on a shared one a pinned thread waits
  for its busy core instead of moving to an idle one.
* ``optimization``: ``all`` (default; layout transforms and the NCHWc kernels), ``extended``
  (operator fusions, QDQ -> QLinear), ``basic`` (constant folding, redundant-node removal),
  ``disable``. Lower levels only help to locate a fusion bug; an INT8 QDQ graph below ``extended``
  runs in float between DequantizeLinear and QuantizeLinear nodes.
* ``xnnpack=False``: LiteRT with its built-in reference/optimized kernels only, without the
  XNNPACK delegate (slower for FP32 and INT8 on x86 and ARM; kept for A/B comparisons and as a
  workaround should a delegate bug appear).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cxr_core.errors import CxrEdgeError

#: ONNX Runtime graph optimisation levels, lowest to highest (names of GraphOptimizationLevel).
OPTIMIZATION_LEVELS: dict[str, str] = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


class RuntimeSettingsError(CxrEdgeError, ValueError):
    """A runtime setting has an invalid value (the message names it and what is expected)."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How a backend runs its model; the defaults suit shared and battery-powered devices."""

    spinning: bool = False  # ONNX Runtime: idle intra-op threads busy-wait instead of sleeping
    affinity: bool = False  # ONNX Runtime: pin each worker thread to one logical CPU
    optimization: str = "all"  # ONNX Runtime graph optimisation level (OPTIMIZATION_LEVELS)
    xnnpack: bool = True  # LiteRT: apply the XNNPACK delegate

    def __post_init__(self) -> None:
        for name in ("spinning", "affinity", "xnnpack"):
            if not isinstance(getattr(self, name), bool):
                raise RuntimeSettingsError(
                    f"runtime setting {name}={getattr(self, name)!r}; expected true or false"
                )
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise RuntimeSettingsError(
                f"runtime setting optimization={self.optimization!r}; "
                f"expected one of {list(OPTIMIZATION_LEVELS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RuntimeSettings:
        """Settings from JSON (unknown keys refused, missing keys take the defaults)."""
        if not isinstance(data, dict):
            raise RuntimeSettingsError(f"runtime settings {data!r}; expected an object")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise RuntimeSettingsError(
                f"unknown runtime setting(s) {unknown}; expected some of {list(cls.__dataclass_fields__)}"
            )
        return cls(**data)

    def label(self, runtime_family: str) -> str:
        """A short name of the settings that matter to ``runtime_family`` (``onnxruntime``/``litert``)."""
        if runtime_family == "litert":
            return "xnnpack" if self.xnnpack else "no-xnnpack"
        parts = ["spin" if self.spinning else "nospin", f"opt-{self.optimization}"]
        if self.affinity:
            parts.append("pinned")
        return ",".join(parts)


DEFAULT_SETTINGS = RuntimeSettings()
