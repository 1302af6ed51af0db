"""Churn-risk scoring service.

The product's code lives in the top-level folders `features/`, `training/`, `models/` and
`serving/`, installed as `churn_risk.features`, `churn_risk.training`, ... so that their generic
names never collide with other packages.
"""

__version__ = "0.1.0"
