"""The Dask engine runs the same feature functions and gives the same rows as pandas."""

from __future__ import annotations

import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.dask_engine import build_frame_dask, dask_client
from churn_risk.features.labels import resolve_target
from churn_risk.features.lifecycle import feature_specs
from churn_risk.features.snapshots import build_snapshot, build_training_frame, monthly_as_ofs

pytestmark = pytest.mark.slow


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["as_of", "customer_id"]).reset_index(drop=True)


def test_dask_equals_pandas_on_a_two_worker_local_cluster(demo_folder, prep):
    cfg = FeatureConfig()
    target = resolve_target(prep)
    as_ofs = monthly_as_ofs(prep, cfg, target)[-2:]
    latest = monthly_as_ofs(prep, cfg)[-1]
    with dask_client(n_workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        address = client.scheduler.address
        snapshot, specs = build_frame_dask(demo_folder, [latest], cfg, target,
                                           scheduler=address, npartitions=4)
        training, _ = build_frame_dask(demo_folder, as_ofs, cfg, target, labelled=True,
                                       scheduler=address, npartitions=3)
    assert specs == feature_specs(prep)
    pd.testing.assert_frame_equal(snapshot, _sorted(build_snapshot(prep, latest, cfg, target)),
                                  check_exact=True)
    pd.testing.assert_frame_equal(
        training, _sorted(build_training_frame(prep, as_ofs, cfg, target)), check_exact=True)
