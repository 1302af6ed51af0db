"""One module per job a user runs: `train`, `promote`, `evaluate`, `score`, `worklist`,
`campaigns`, `explain_change`, `demo`.

A job takes typed settings (a frozen pydantic model, unknown fields refused) and the data source
(or data already read and prepared: every job reads and validates its data once), does the work
with the pure code of `features/`, `training/`, `models/` and `serving/`, writes its files and
its MLflow run, and returns a result object. The CLI (`churn_risk/cli.py`) only parses options,
calls a job and prints its result; the MLproject entry points call the CLI.
"""
