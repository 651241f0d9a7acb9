"""Models: the two-stage LTV + purchase-day + churn artifact, and the baselines."""
from ltv.models.ltv_model import STAGES, LTVModel, label_days, seen_until, train, trained_on, verify

__all__ = ["STAGES", "LTVModel", "label_days", "seen_until", "train", "trained_on", "verify"]
