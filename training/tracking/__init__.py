"""lakebert's MLflow, in one package: what train, tune and score read and write there.

- `store.py`: the store: tracking and registry URIs (the default sqlite store under the
  lakehouse), a client that names both, the experiment, `TrackingError`.
- `tags.py`: the tag catalogue: every tag and artifact name lakebert writes, defined once.
- `lineage.py`: the lineage tags, the config as params, the model card.
- `runs.py`: runs found by their tags (`find_or_create_run`, the one search-or-create), a
  training job's one run (`prepare_run` -> `RunPlan`: new, resume, up to date), its result and
  checkpoints read back.
- `tracker.py`: `MlflowTracker` (rank 0) and `NullTracker`: what the Trainer logs through.
- `registry.py`: the registered version a run's tags name (their one writer and one reader),
  registering a run's logged model (tune), and the `@champion` decision.
- `models.py`: a model to score with, resolved in the registry and downloaded (score).

No Spark here: the launchers (`spark_jobs`) and the training processes both use it.
"""
