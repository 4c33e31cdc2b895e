"""training.trainer: the state a checkpoint carries (the loop itself: tests/training/test_train.py)."""

from training.trainer import TrainState


def test_train_state_is_exactly_what_a_checkpoint_saves_and_restores():
    state = TrainState(step=7, epoch=1, batches_done=3, best=0.5)
    state.record_step(0.9, 1e-3, 2.0)
    state.history["eval"].append({"step": 7, "f1_macro": 0.5})
    assert TrainState.restored({"step": 7, **state.saved()}) == state
    assert set(state.saved()) == {"epoch", "batches_done", "best", "history"}  # the step names the checkpoint
