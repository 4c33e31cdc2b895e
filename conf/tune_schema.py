"""The `tune` section: an Optuna study's search space over `train` keys, and its settings.

    from conf.tune_schema import TuneConfig
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from conf.fields import Section
from conf.train_schema import TrainConfig


# `train` keys a study may not vary: where the data and outputs are, the model the data was
# tokenized for, the processes (`tune.parallel_trials` splits them), and the metric that picks
# the best checkpoint (`tune.metric` picks the best trial).
NOT_TUNABLE = ("data", "model", "output_dir", "use_gpu", "num_processes", "local_mode", "study", "select_metric")
# `tune.space.<key>.type` -> the kinds of `train` key it fits.
DISTRIBUTIONS = {"loguniform": (float,), "uniform": (float,), "int": (int,), "categorical": (int, float, bool, str)}


def _base_type(annotation) -> type:
    """int, float, bool or str: the type of a `train` field, without `None` (Literal -> str)."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    first = args[0]
    if typing.get_origin(first) is Literal:
        return type(typing.get_args(first)[0])
    return first if isinstance(first, type) else str


def _space_mapping(value):
    """`--set tune.space.lr.type=...` gives the key `lr.type`: grouped as the YAML file form
    gives it (`lr: {type: ...}`); each entry's strings are read by `_inline_entry`."""
    if not isinstance(value, dict):
        return value
    out: dict = {}
    for key, item in value.items():
        name, _, sub = str(key).partition(".")
        if sub:
            entry = out.setdefault(name, {})
            if not isinstance(entry, dict):
                raise ValueError(f"{name} is given both as one value and key by key ({name}.{sub})")
            entry[sub] = item
        else:
            out[name] = dict(item) if isinstance(item, dict) else item
    return out


def _inline_entry(value):
    """`--set tune.space.lr={type: loguniform, low: 1.0e-5, high: 1.0e-3}` (a YAML flow mapping)
    and `--set tune.space.batch_size.choices=[16, 32]`: strings read as YAML, within
    `conf.bounded_yaml`'s limits; what is not valid YAML is this entry's error."""
    from conf.bounded_yaml import YamlError, load_yaml

    try:
        if isinstance(value, str):
            return load_yaml(value)
        if isinstance(value, dict):
            return {key: load_yaml(item) if isinstance(item, str) else item for key, item in value.items()}
    except YamlError as exc:
        raise ValueError(str(exc)) from None
    return value


class Distribution(Section):
    """One `tune.space` entry: `{type: loguniform|uniform|int, low, high}` or `{type: categorical, choices: [...]}`."""

    type: Literal["loguniform", "uniform", "int", "categorical"]
    """loguniform: a float whose log is uniform in [low, high]; uniform: a float in [low, high];
    int: an integer in [low, high] (every `step`); categorical: one of `choices`."""
    low: float | None = None
    """The smallest value (not for categorical)."""
    high: float | None = None
    """The largest value (not for categorical)."""
    step: int = Field(1, ge=1)
    """For int: the spacing of the values."""
    choices: list[int | float | bool | str | None] | None = None
    """For categorical: the values to choose from."""

    @model_validator(mode="after")
    def _bounds(self):
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical distribution needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical distribution takes `choices`, not low/high")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} distribution takes low and high, not `choices`")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} distribution needs both low and high")
        if self.low >= self.high:
            raise ValueError(f"low={self.low:g} must be below high={self.high:g}")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError(f"a loguniform distribution needs low > 0 (got {self.low:g})")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int distribution needs whole bounds (got {self.low:g}, {self.high:g})")
        return self

    def values(self) -> list:
        """The values that must each be a valid setting of the key: the bounds, or the choices."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]


class TuneConfig(Section):
    """`lakebert tune`: an Optuna study over `train` settings, each trial a `lakebert train` job."""

    space: Annotated[dict[str, Annotated[Distribution, BeforeValidator(_inline_entry)]],
                     BeforeValidator(_space_mapping)] = Field(default_factory=dict)
    """What to search: `train` key -> distribution, e.g. `lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}`
    or `batch_size: {type: categorical, choices: [16, 32]}`. Types: loguniform, uniform, int
    (low, high, optional step), categorical (choices). Keys not in the space keep their `train` value."""
    trials: int = Field(8, ge=1)
    """Trials in the study, counting those of earlier (killed) runs of it: a rerun runs the rest."""
    timeout: float | None = Field(None, gt=0)
    """Stop starting new trials after this many seconds of this run. None = no limit."""
    metric: str | None = None
    """The validation metric a trial returns (and reports to the pruner at each evaluation).
    None = `train.select_metric`."""
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    """auto = minimize a loss, maximize anything else."""
    sampler: Literal["tpe", "random"] = "tpe"
    """How trials pick their values: TPE (Bayesian, Optuna's default) or random."""
    pruner: Annotated[Literal["median", "successive_halving"] | None,
                      BeforeValidator(lambda v: None if isinstance(v, str) and v.lower() == "none" else v)] = "median"
    """Stop a trial early when its evaluations lag: median = worse than the median of earlier trials
    at the same point; successive_halving = asynchronous successive halving; none (null) = never."""
    pruner_startup_trials: int = Field(2, ge=0)
    """The median pruner prunes nothing until this many trials have finished."""
    seed: int = 0
    """The sampler's seed (a rerun of a study draws from seed + the trials it already has)."""
    parallel_trials: int = Field(1, ge=1)
    """Trials at once, each with `train.num_processes / parallel_trials` processes. 1 = one after
    another, each with all of them (usually faster per trial; see the README)."""
    storage: str | None = None
    """Where the study persists (an Optuna RDB URL). None = `optuna.db` beside a local sqlite
    MLflow store (or under a local lakehouse.root); on a cluster, a database every executor
    reaches, e.g. `postgresql://user@db-host/optuna` (not the MLflow database itself)."""
    study: str | None = None
    """The study's name. None = derived from the data, the `train` config and the search, so the
    same command resumes the same study and a changed one starts a new study."""
    alias: str = Field("tuned", min_length=1)
    """The registered model's alias for the best trial's version."""

    @field_validator("space")
    @classmethod
    def _space_fits_train(cls, space: dict[str, Distribution]) -> dict[str, Distribution]:
        tunable = [k for k in TrainConfig.model_fields if k not in NOT_TUNABLE]
        for key, dist in space.items():
            if key not in tunable:
                hint = difflib.get_close_matches(key, tunable, n=1)
                raise ValueError(f"{key!r} is not a train key a study can vary"
                                 + (f"; did you mean {hint[0]!r}?" if hint else f"; tunable: {', '.join(tunable)}"))
            kind = _base_type(TrainConfig.model_fields[key].annotation)
            if kind not in DISTRIBUTIONS[dist.type] or (kind is bool and dist.type != "categorical"):
                fits = [name for name, kinds in DISTRIBUTIONS.items() if kind in kinds]
                raise ValueError(f"{key}: a {dist.type} distribution does not fit train.{key}, which is "
                                 f"{kind.__name__} (use {' or '.join(fits)})")
            probe = TrainConfig()
            for value in dist.values():
                try:
                    setattr(probe, key, value)
                except ValidationError as exc:
                    raise ValueError(f"{key}: {value!r} is not a valid train.{key}: "
                                     f"{exc.errors()[0]['msg']}") from None
        return space
