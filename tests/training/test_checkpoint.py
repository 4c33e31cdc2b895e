"""training.checkpoint: atomic, complete-marked, last-K, weights-only checkpoints."""

import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup

from training.checkpoint import COMPLETE, MODEL_FILE, CheckpointManager, rng_state


def tiny_model(seed=0):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(config)


def train_steps(model, optimizer, scheduler, steps):
    for _ in range(steps):
        ids = torch.randint(0, 50, (4, 8))
        loss = model(input_ids=ids, labels=torch.randint(0, 3, (4,))).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return loss.item()


def setup(seed=0):
    model = tiny_model(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 20)
    return model, optimizer, scheduler


def test_resume_from_checkpoint_reproduces_an_uninterrupted_run_bitwise(tmp_path):
    model, opt, sched = setup()
    torch.manual_seed(1)
    train_steps(model, opt, sched, 3)
    ckpt = CheckpointManager(tmp_path)
    ckpt.save(3, model, opt, sched, state={"epoch": 0, "rows_done": 12}, rng={"rank0": rng_state()})
    expected_loss = train_steps(model, opt, sched, 4)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    model2, opt2, sched2 = setup(seed=123)  # different init: everything must come from the checkpoint
    state = ckpt.load(ckpt.latest(), model2, opt2, sched2)
    assert state == {"step": 3, "epoch": 0, "rows_done": 12}
    assert train_steps(model2, opt2, sched2, 4) == expected_loss
    assert all(torch.equal(expected[k], v) for k, v in model2.state_dict().items())


def test_each_rank_gets_its_own_rng_state_back(tmp_path):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path)
    torch.manual_seed(1)
    rank0 = rng_state()
    torch.manual_seed(2)
    rank1 = rng_state()
    want = torch.rand(1).item()  # rank 1's next draw
    ckpt.save(1, model, rng={"rank0": rank0, "rank1": rank1})
    torch.manual_seed(99)
    ckpt.load(ckpt.latest(), model, rank=1)
    assert torch.rand(1).item() == want
    torch.manual_seed(99)
    ckpt.load(ckpt.latest(), model, rank=None)  # None: the RNG is left alone
    assert torch.rand(1).item() != want


def test_keeps_only_the_last_k(tmp_path):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3, 4):
        ckpt.save(step, model, opt, sched)
    assert [p.name for p in ckpt.candidates()] == ["step-000000004", "step-000000003"]


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "no_marker"])
def test_torn_latest_checkpoint_is_skipped_for_the_previous_one(tmp_path, damage):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path)
    good = ckpt.save(1, model, opt, sched)
    bad = ckpt.save(2, model, opt, sched)
    weights = bad / MODEL_FILE
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "corrupt":
        data = bytearray(weights.read_bytes())
        data[-10] ^= 0xFF
        weights.write_bytes(bytes(data))
    else:
        (bad / COMPLETE).unlink()
    assert ckpt.latest() == good


def test_files_load_with_weights_only_and_safetensors(tmp_path):
    from safetensors.torch import load_file

    model, opt, sched = setup()
    train_steps(model, opt, sched, 1)
    path = CheckpointManager(tmp_path).save(1, model, opt, sched, rng={"rank0": rng_state()})
    assert set(load_file(str(path / MODEL_FILE))) == set(model.state_dict())
    for name in ("optimizer.pt", "scheduler.pt", "torch_rng.pt"):
        torch.load(path / name, weights_only=True)
    assert set(json.loads((path / COMPLETE).read_text())) == {p.name for p in path.iterdir()} - {COMPLETE}


def test_clearing_removes_the_checkpoints_and_nothing_else_in_the_folder(tmp_path):
    model, opt, sched = setup()
    ckpt = CheckpointManager(tmp_path / "checkpoints")
    ckpt.save(1, model, opt, sched)
    (tmp_path / "checkpoints" / "thesis.txt").write_text("not lakebert's")
    (tmp_path / "checkpoints" / "notes").mkdir()
    ckpt.clear()
    assert ckpt.latest() is None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["notes", "thesis.txt"]


def test_a_full_disk_while_saving_is_an_os_error_that_names_it(tmp_path):
    """torch's own file writer reports a full disk as "unexpected pos"; through a Python file the
    OSError reaches the message (`conf.errors`). /dev/full fails every write with ENOSPC."""
    from conf.errors import describe

    model, opt, sched = setup()
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "optimizer.pt").symlink_to("/dev/full")
    with pytest.raises(Exception) as caught:
        CheckpointManager._write(folder, 1, model, opt, sched, None, None)
    assert "No space left on device" in describe(caught.value) and "ENOSPC" in describe(caught.value)


def test_no_checkpoint_means_none(tmp_path):
    assert CheckpointManager(tmp_path / "missing").latest() is None


def test_on_s3_a_checkpoint_resumes_bitwise_and_an_unmarked_newer_one_is_skipped_then_pruned(s3_bucket):
    from conf import load_config
    import storage

    storage.configure(load_config().spark.conf)  # the AWS variables alone
    root = f"s3a://{s3_bucket}/run/checkpoints"
    model, opt, sched = setup()
    torch.manual_seed(1)
    train_steps(model, opt, sched, 3)
    ckpt = CheckpointManager(root, keep_last=2)
    saved = ckpt.save(3, model, opt, sched, state={"epoch": 0}, rng={"rank0": rng_state()})
    assert saved == f"{root}/step-000000003" and ckpt.remote
    expected = train_steps(model, opt, sched, 2)

    torn = f"{root}/step-000000004"  # a crash mid-upload: files, no marker
    storage.write_bytes(f"{torn}/{MODEL_FILE}", b"half a model")
    reader = CheckpointManager(root, keep_last=2)  # another process, as after a restart
    assert reader.latest() == saved
    model2, opt2, sched2 = setup(seed=5)
    assert reader.load(reader.latest(), model2, opt2, sched2)["epoch"] == 0
    assert train_steps(model2, opt2, sched2, 2) == expected  # same RNG, same weights: bitwise

    for step in (5, 6):
        ckpt.save(step, model, opt, sched)
    assert [c.rsplit("/", 1)[-1] for c in ckpt.candidates()] == ["step-000000006", "step-000000005"]
    assert not storage.exists(torn)  # the torn one went once a newer checkpoint was complete


def test_on_s3_a_checkpoint_whose_files_do_not_match_the_marker_is_skipped(s3_bucket):
    from conf import load_config
    import storage

    storage.configure(load_config().spark.conf)
    ckpt = CheckpointManager(f"s3a://{s3_bucket}/ck")
    model, opt, sched = setup()
    good = ckpt.save(1, model, opt, sched)
    bad = ckpt.save(2, model, opt, sched)
    data = bytearray(storage.read_bytes(f"{bad}/{MODEL_FILE}"))
    data[-10] ^= 0xFF
    storage.write_bytes(f"{bad}/{MODEL_FILE}", bytes(data))
    assert CheckpointManager(f"s3a://{s3_bucket}/ck").latest() == good


def test_on_s3_a_step_saved_again_loads_the_new_weights_not_a_cached_copy(s3_bucket):
    import storage
    from conf import load_config

    storage.configure(load_config().spark.conf)
    ckpt = CheckpointManager(f"s3a://{s3_bucket}/again")
    model, opt, sched = setup()
    first = ckpt.save(2, model, opt, sched)
    assert ckpt.latest() == first  # fetched and cached
    train_steps(model, opt, sched, 1)
    ckpt.save(2, model, opt, sched)  # a replayed step after a resume replaces it
    loaded = tiny_model(seed=9)
    ckpt.load(ckpt.latest(), loaded, rank=None)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
