"""MLflow: one MLflow run per sfteval record, in MLFLOW_EXPERIMENT_NAME (default "sfteval").

The tracking server comes from MLflow's own settings (MLFLOW_TRACKING_URI; a local
./mlruns folder when unset). Metrics with a step (sweeps) are logged at that step, so the
MLflow UI draws them as curves; texts become artifacts.
"""

from __future__ import annotations

import os

from sfteval.trackers import Record


class MlflowTracker:
    name = "mlflow"

    def send(self, record: Record) -> str | None:
        import mlflow

        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or "sfteval")
        with mlflow.start_run(run_name=record.name, tags=dict(record.tags)) as run:
            params = {k: ("" if v is None else str(v))[:6000] for k, v in record.params.items()}
            if params:
                mlflow.log_params(params)
            for step, metrics in record.metrics:
                if metrics:
                    mlflow.log_metrics({_key(k): v for k, v in metrics.items()}, step=step)
            for name, text in record.texts.items():
                mlflow.log_text(text, name)
            return f"{mlflow.get_tracking_uri()} run {run.info.run_id}"


def _key(k: str) -> str:
    # MLflow allows alphanumerics, _ - . space : / in metric names.
    return "".join(ch if ch.isalnum() or ch in "_-. :/" else "_" for ch in k)
