"""Everything MLflow. The only package that imports mlflow, and only lazily, so collecting tests
stays fast and a broken MLflow install cannot break dataset loading or scoring.

  client.py    opening the store: TrackingError, the experiment of a run, the git commit
  runs.py      one suite run logged (and its local record), a drift check's run, runs read back;
               the one owner of the per-case table's schema and of reading baselines
  case_traces.py  a trace per case carrying its assessments (genai.evaluate's conventions)
  traces.py    reading a window of a deployed model's traces back (drift)
  registry.py  the model registry: versions, promotion (the verdict on a version), champions
  genai_interop.py  mlflow.genai both ways: the offline checks as `@scorer`s of
               mlflow.genai.evaluate (scorer_for, scorers_for), an MLflow evaluation dataset as a
               suite's Dataset (dataset_from_mlflow)
"""

from harness.tracking.client import TrackingError, git_commit
from harness.tracking.registry import (
    champion_run_id,
    mark_model_version_failed,
    promote_model_version,
    resolve_model_version,
)
from harness.tracking.case_traces import TraceReport
from harness.tracking.genai_interop import (
    ModelAssistedCheckError,
    dataset_from_mlflow,
    scorer_for,
    scorers_for,
)
from harness.tracking.runs import (
    RESULTS_ARTIFACT,
    VERDICT_ARTIFACT,
    LoggedRun,
    RecordedRun,
    SuiteLogger,
    case_values,
    load_run,
    log_drift_run,
    log_suite_run,
    read_baseline,
    score_columns,
    write_local_record,
)
from harness.tracking.traces import SpanRecord, TraceBatch, TraceRecord, load_traces

__all__ = [
    "RESULTS_ARTIFACT", "VERDICT_ARTIFACT", "LoggedRun", "ModelAssistedCheckError", "RecordedRun", "SpanRecord",
    "SuiteLogger", "TraceBatch", "TraceRecord", "TraceReport", "TrackingError", "case_values",
    "champion_run_id", "dataset_from_mlflow", "git_commit", "load_run", "load_traces", "log_drift_run",
    "log_suite_run", "mark_model_version_failed", "promote_model_version", "read_baseline",
    "resolve_model_version", "score_columns", "scorer_for", "scorers_for", "write_local_record",
]
