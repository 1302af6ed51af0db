"""training"""

if __name__ != "churn_risk.training":  # pragma: no cover - a second copy under another name
    raise ImportError(f"import churn_risk.training, not {__name__}: the repository's training/ "
                      "folder is the code of churn_risk.training (one import path per module)")
