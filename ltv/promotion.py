"""The one promotion rule, used by the local loop and by the SageMaker pipeline's condition step.

A challenger and the current champion are scored on the same out-of-time holdout. The
challenger is promoted only if it beats the champion on the primary metric by at least
`min_improvement` and is no worse than each guard metric's tolerance; a tie is not a win.
With no champion, the first valid model (finite primary metric) is promoted. A challenger whose
primary or guard metric is NaN/inf is rejected: a metric it cannot show is one it fails. Promoted means
Approved, or PendingManualApproval when the game's config asks for manual approval.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any

from ltv.config import LOWER_IS_BETTER, PromotionRule

APPROVED, PENDING, REJECTED = "Approved", "PendingManualApproval", "Rejected"


@dataclass(frozen=True)
class Decision:
    promote: bool
    status: str
    reason: str
    primary: dict[str, Any] = field(default_factory=dict)
    guards: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The evaluation contract's `promotion` block; `promote` is 1/0 for the pipeline's JsonGet."""
        return asdict(self) | {"promote": int(self.promote)}


def _gain(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    return champion - challenger if metric in LOWER_IS_BETTER else challenger - champion


def _finite(x: Any) -> bool:
    """A real number that is not NaN/inf: numpy scalars count (np.float32 is no `float`), booleans
    and strings do not."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, rule: PromotionRule) -> Decision:
    """Apply the promotion rule to two sets of holdout metrics (champion None = no champion yet)."""
    name = rule.primary_metric
    ok_status = APPROVED if rule.approval == "auto" else PENDING
    value = challenger.get(name)
    if not _finite(value):
        return Decision(False, REJECTED, f"challenger's {name} is not a finite number ({value}); invalid model")
    if champion is None:
        return Decision(True, ok_status, f"no champion yet: the first valid model becomes champion ({name} {value:.4f})",
                        primary={"metric": name, "challenger": value})
    incumbent = champion.get(name)
    if not _finite(incumbent):
        return Decision(True, ok_status, f"the champion has no valid {name} on this holdout; challenger {value:.4f} wins",
                        primary={"metric": name, "challenger": value, "champion": incumbent})
    gain = _gain(name, value, incumbent)
    primary = {"metric": name, "challenger": value, "champion": incumbent, "gain": gain,
               "required": rule.min_improvement}
    guards = {}
    breached = []
    for g, tolerance in rule.guard_metrics.items():
        c, k = challenger.get(g), champion.get(g)
        if not _finite(c):  # a guard the challenger cannot show is a guard it fails
            guards[g] = {"challenger": c, "champion": k, "checked": True}
            breached.append(f"{g} is not a finite number for the challenger ({c})")
            continue
        if not _finite(k):  # the champion has no value to compare with: nothing to guard against
            guards[g] = {"challenger": c, "champion": k, "checked": False}
            continue
        loss = -_gain(g, c, k)
        guards[g] = {"challenger": c, "champion": k, "loss": loss, "tolerance": tolerance, "checked": True}
        if loss > tolerance:
            breached.append(f"{g} worse by {loss:.4f} (tolerance {tolerance})")
    if gain < rule.min_improvement or (gain == 0 and rule.min_improvement == 0):
        return Decision(False, REJECTED, f"{name} {value:.4f} vs champion {incumbent:.4f}: gain {gain:+.4f} is below "
                                         f"the required {rule.min_improvement}", primary, guards)
    if breached:
        return Decision(False, REJECTED, f"{name} improves by {gain:+.4f} but guard metrics breached: "
                                         + "; ".join(breached), primary, guards)
    return Decision(True, ok_status, f"{name} {value:.4f} beats champion {incumbent:.4f} by {gain:+.4f} "
                                     f"(required {rule.min_improvement}); guards within tolerance", primary, guards)
