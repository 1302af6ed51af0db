"""serving"""

if __name__ != "churn_risk.serving":  # pragma: no cover - a second copy under another name
    raise ImportError(f"import churn_risk.serving, not {__name__}: the repository's serving/ "
                      "folder is the code of churn_risk.serving (one import path per module)")
