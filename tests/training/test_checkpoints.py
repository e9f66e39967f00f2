"""The checkpoint that --resume reads: what it restores, how older ones read, and its errors."""

from __future__ import annotations

import pytest
import torch

from bert4rec.errors import Bert4RecError
from bert4rec.training.checkpoints import TrainState, load_checkpoint, save_checkpoint


def parts():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return model, optimizer, scheduler


def test_a_checkpoint_restores_weights_optimizer_schedule_and_progress(tmp_path):
    model, optimizer, scheduler = parts()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = TrainState(epoch=3, best_ndcg=0.0, best_epoch=2, bad_rounds=1, train_seconds=12.5)
    save_checkpoint(tmp_path, model, None, optimizer, scheduler, state, [{"epoch": 1, "loss": 2.0}])
    fresh, fresh_optimizer, fresh_scheduler = parts()
    loaded, history = load_checkpoint(tmp_path, fresh, None, fresh_optimizer, fresh_scheduler)
    assert loaded == state and history == [{"epoch": 1, "loss": 2.0}]  # a best NDCG of 0.0 stays 0.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values(),
                                                 strict=True))
    assert fresh_scheduler.last_epoch == 1 and fresh_optimizer.state_dict()["state"]


def test_a_checkpoint_from_before_none_meant_not_yet_validated_reads_as_none(tmp_path):
    model, optimizer, scheduler = parts()
    save_checkpoint(tmp_path, model, None, optimizer, scheduler, TrainState(epoch=1, best_ndcg=-1.0), [])
    model, optimizer, scheduler = parts()
    loaded, _ = load_checkpoint(tmp_path, model, None, optimizer, scheduler)
    assert loaded.best_ndcg is None
    save_checkpoint(tmp_path, model, None, optimizer, scheduler, TrainState(epoch=1, best_ndcg=None), [])
    assert load_checkpoint(tmp_path, model, None, optimizer, scheduler)[0].best_ndcg is None


def test_checkpoint_errors_name_the_file(tmp_path):
    model, optimizer, scheduler = parts()
    with pytest.raises(Bert4RecError, match=r"checkpoint\.pt: no checkpoint to resume from$"):
        load_checkpoint(tmp_path, model, None, optimizer, scheduler)
    save_checkpoint(tmp_path, model, None, optimizer, scheduler, TrainState(), [])
    with pytest.raises(Bert4RecError, match=r"checkpoint\.pt: corrupt or incompatible checkpoint \(RuntimeError: "):
        load_checkpoint(tmp_path, torch.nn.Linear(4, 2), None, optimizer, scheduler)  # another model's shapes
