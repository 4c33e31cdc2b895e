"""`lakebert score`'s layers; the stage itself (orchestration and `main()`) is `spark_jobs/score.py`.

- `registry.py`: the model to score with (URI, version, its run's clean settings, the run's
  linear baseline), resolved and downloaded by `training.tracking.models`, every MLflow read of score.
- `model_cache.py`: the downloaded model, kept per model version in a private, verified folder.
- `source.py`: the input (silver or what ingest reads), normalized as the model's training run did.
- `executor.py`: the model shipped to the executors and run there (`mapInArrow`).
- `transforms.py`: pure DataFrame transforms: the predictions' schema and key, what is left to score.
- `evaluate.py`: the Spark side of the evaluation and drift (what the driver collects, the
  training split's profile); the numbers are `training.evaluation`'s.
- `score_run.py`: the score run in MLflow (metrics, evaluation, drift, figures).
- `summary.py`: `ScoreSummary`, what the stage returns and prints.
"""
