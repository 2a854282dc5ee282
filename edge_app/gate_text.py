"""The learned input gate in the app's words: each signal's score, and the "score anyway" mark (no Kivy).

Used by the refusal screen (each signal's score against its threshold), the result screen and the
report (the mark of a result the user chose to score although the gate refused the image), and
the kiosk's study log.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cxr_core.gate_signals import SignalDecision

#: The mark of a result scored at the user's request although the learned gate refused the image.
OVERRIDE_TITLE = "SCORED ANYWAY - the input gate refused this image"
OVERRIDE_NOTE = "The user chose to score it anyway; the model cannot vouch for these scores."
OVERRIDE_EXPLANATION = f"{OVERRIDE_NOTE} Refused because: "
#: The study log's gate column for such a study (followed by the overridden reasons).
OVERRIDE_LOG = "refused, scored anyway at the user's request"


def signal_line(decision: SignalDecision) -> str:
    """``feature_mahalanobis: 61.2 (refuses above 56.2) - refused``."""
    score = f"{decision.score:.3g}" if math.isfinite(decision.score) else "not a number"
    direction = "above" if decision.refuse_above else "below"
    verdict = "passed" if decision.accepted else "refused"
    kind = "" if decision.learned else " (image quality)"
    return (
        f"{decision.signal.replace('_', ' ')}{kind}: {score} "
        f"(refuses {direction} {decision.threshold:.3g}) - {verdict}"
    )


def signals_text(decisions: Sequence[SignalDecision]) -> str:
    """Every signal's line, or an empty string when the bundle has no learned gate."""
    return "\n".join(signal_line(d) for d in decisions)


def override_text(reasons: Sequence[str]) -> str:
    """The result screen's mark of an overridden refusal ("" when the gate accepted the image)."""
    if not reasons:
        return ""
    return f"{OVERRIDE_TITLE}. {OVERRIDE_EXPLANATION}{'; '.join(reasons)}"
