"""Train one job: `train(cfg)` for a single process, torchrun and TorchDistributor alike.

    python -m training --set lakehouse.root=./lakehouse                 # one process
    torchrun --nproc_per_node=2 -m training --set lakehouse.root=...     # DDP: gloo on CPU, NCCL on CUDA
    lakebert train                                                      # TorchDistributor (spark_jobs/train.py)

Finds the tokenized data and the job (`training.job`), the job's one MLflow run
(`training.tracking`: rank 0 decides, every rank learns), and runs the `Trainer`
(`training.trainer`): AdamW with linear warmup and decay, gradient accumulation and clipping,
validation at each epoch end (and every `train.eval_every` steps), the best checkpoint by
`train.select_metric` evaluated on validation and test at the end, the model logged and
registered by rank 0.

A failing rank writes `<output_dir>/failures/rank-<r>.json` (error and traceback) for the
launcher to report, and rank 0 ends the MLflow run FAILED.
"""

from __future__ import annotations

from conf import Config
from conf.redact import remember_secrets
from training import job, tracking
from training.distributed import broadcast, init_distributed, teardown
from training.trainer import TrainData, Trainer


def train(cfg: Config, plan: tracking.RunPlan | None = None, stop_after_steps: int | None = None) -> dict:
    """Train, evaluate, log to MLflow and return the result.

    `plan`: the job's MLflow run, as the launcher prepared it; None = rank 0 finds or creates
    it. `stop_after_steps` ends the run abruptly, as a crash would (tests)."""
    env = init_distributed(cfg.train.use_gpu)
    out_dir = None
    tracker = tracking.NullTracker()
    try:
        manifest_path, manifest = job.read_manifest(cfg)
        out_dir = job.output_dir(cfg, manifest)
        if plan is None:
            try:
                plan = tracking.prepare_run(cfg, manifest, str(manifest_path)) if env.is_main else None
            except Exception as exc:  # every rank must learn of it, not only rank 0
                plan = exc
            plan = broadcast(env, plan)
        if plan.status == tracking.UP_TO_DATE:
            return {"status": "up_to_date", "run_id": plan.run_id, "tracking_uri": plan.tracking_uri,
                    **tracking.finished_result(plan)}
        try:
            tracker, opened = tracking.open_tracker(cfg, plan, env.is_main), None
        except Exception as exc:
            opened = exc
        broadcast(env, opened)  # a rank 0 that cannot log stops every rank, not only itself
        result = Trainer(cfg, env, plan, tracker, TrainData.open(manifest_path, manifest), out_dir).train(stop_after_steps)
        tracker.finish("FINISHED")
        return result
    except BaseException as exc:
        if out_dir is not None and not isinstance(exc, KeyboardInterrupt):
            job.write_failure(out_dir, env.rank, env.local_rank, exc)
        tracker.finish("FAILED")  # never left RUNNING, never FINISHED
        raise
    finally:
        teardown(env)


def train_job(config: dict, plan: dict | None = None) -> dict:
    """What TorchDistributor runs in every process: plain data in, rank 0's result out (without
    the per-step history, which is in `<output_dir>/result.json`)."""
    remember_secrets(config)  # this process did not load the config: hide its secrets here too
    result = train(Config.model_validate(config), tracking.RunPlan(**plan) if plan else None)
    return {k: v for k, v in result.items() if k != "history"}
