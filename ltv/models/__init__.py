"""Models: the two-stage LTV + purchase-day + churn artifact, and the baselines."""
from ltv.models.ltv_model import STAGES, LTVModel, train, verify

__all__ = ["STAGES", "LTVModel", "train", "verify"]
