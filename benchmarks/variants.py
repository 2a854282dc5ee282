"""Which runtime settings edge-bench measures beside the defaults: ``--ab`` rows and ``--tune`` candidates.

Settings are :class:`cxr_core.runtime.settings.RuntimeSettings`; each list starts from the
defaults (idle threads sleep, every graph optimisation, XNNPACK on) and changes one thing, so a
row's difference to the default row is that one setting's effect.
"""

from __future__ import annotations

from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings

#: ``--ab``: the alternatives per runtime family (the default row is always measured too).
AB_SETTINGS: dict[str, tuple[RuntimeSettings, ...]] = {
    "onnxruntime": (
        RuntimeSettings(spinning=True),
        RuntimeSettings(optimization="extended"),
        RuntimeSettings(optimization="basic"),
    ),
    "litert": (RuntimeSettings(xnnpack=False),),
}
#: ``--tune``: the candidates besides the defaults (settings that could win; the lower optimisation
#: levels and LiteRT without XNNPACK only ever lost here, so tuning does not spend time on them).
TUNE_SETTINGS: dict[str, tuple[RuntimeSettings, ...]] = {
    "onnxruntime": (RuntimeSettings(spinning=True),),
    "litert": (),
}


def extra_settings(runtime_family: str, ab: bool, tune: bool, threads: int) -> list[RuntimeSettings]:
    """Non-default settings to measure for a format of ``runtime_family`` at ``threads`` threads."""
    chosen: list[RuntimeSettings] = []
    if ab:
        chosen += AB_SETTINGS.get(runtime_family, ())
        if runtime_family == "onnxruntime" and threads > 1:
            chosen.append(RuntimeSettings(affinity=True))
    if tune:
        chosen += TUNE_SETTINGS.get(runtime_family, ())
    if runtime_family == "onnxruntime" and threads == 1:
        # one thread has no worker pool: spinning and affinity change nothing
        chosen = [s for s in chosen if not s.spinning and not s.affinity]
    return [s for s in dict.fromkeys(chosen) if s != DEFAULT_SETTINGS]
