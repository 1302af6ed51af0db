"""`churn store load`: validate CRM tables as a whole data set (a folder or a database, through
a mapping file) and add them to the store; records it holds already are not stored twice."""

from __future__ import annotations

from collections.abc import Callable

from churn_risk.features.io import DataSourceLike
from churn_risk.features.store import Store, WriteResult


def run(source: DataSourceLike, store_url: str,
        progress: Callable[[int, int], None] | None = None) -> WriteResult:
    from churn_risk.features.validation import load_crm

    crm = load_crm(source)  # all of it valid, or nothing is written
    with Store(store_url) as store:
        return store.write(crm, progress)
