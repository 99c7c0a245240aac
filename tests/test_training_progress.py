"""What training tells its user and how it ends: a final validation when the budget (or the last epoch) ends
training on an epoch the interval skipped, a line per epoch with the time left and the best score, the CPU warning,
the fine-tuning freeze and unfreeze, and the demo's epochs and short-run warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

from monai_pipeline.commands.demo import TUMOUR_EPOCHS, _epochs_trained, _warn_if_short
from monai_pipeline.training import FreezeEncoder, TimeLimit, TrainingProgress, build_network, warn_if_slow_on_cpu


class _Evaluator(Engine):
    """A validation engine run as MONAI's are, ``run(global_epoch)``, recording the epochs it validated."""

    def __init__(self) -> None:
        super().__init__(lambda engine, batch: None)
        self.epochs: list[int] = []

    def run(self, global_epoch: int = 1) -> None:  # type: ignore[override]
        self.epochs.append(global_epoch)
        super().run([0], max_epochs=1)


def _trainer(max_epochs: int, interval: int, limit: TimeLimit, evaluator: _Evaluator) -> Engine:
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=interval), lambda e: evaluator.run(e.state.epoch))
    limit.attach(trainer)
    trainer.state.max_epochs = max_epochs
    return trainer


def test_the_budget_ends_training_with_a_validation_of_its_last_epoch():
    evaluator = _Evaluator()
    limit = TimeLimit(minutes=1e-9, validator=evaluator)
    trainer = _trainer(10, 5, limit, evaluator)
    trainer.run([0, 1], max_epochs=10)
    assert trainer.state.epoch == 1 and limit.stopped_by_budget
    assert evaluator.epochs == [1]


def test_the_last_epoch_is_validated_when_the_interval_skips_it():
    evaluator = _Evaluator()
    trainer = _trainer(5, 2, TimeLimit(0, validator=evaluator), evaluator)
    trainer.run([0, 1], max_epochs=5)
    assert evaluator.epochs == [2, 4, 5]


def test_a_validated_last_epoch_is_not_validated_twice():
    evaluator = _Evaluator()
    trainer = _trainer(4, 2, TimeLimit(0, validator=evaluator), evaluator)
    trainer.run([0, 1], max_epochs=4)
    assert evaluator.epochs == [2, 4]


def test_progress_says_epoch_time_left_and_best_score(caplog):
    trainer = Engine(lambda engine, batch: None)
    TrainingProgress().attach(trainer)

    @trainer.on(Events.EPOCH_COMPLETED(once=2))
    def _score(engine):  # as RunCheckpoint publishes a new best
        engine.state.best_metric, engine.state.best_metric_epoch = 0.6125, 2

    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: None)  # the best is set before progress reports
    with caplog.at_level(logging.INFO, logger="monai_pipeline.training.progress"):
        trainer.run([0, 1], max_epochs=3)
    lines = [r.getMessage() for r in caplog.records if r.name == "monai_pipeline.training.progress"]
    assert lines[0].startswith("first step: ") and "an epoch of 2 steps takes about" in lines[0]
    assert lines[1].startswith("epoch 1 of 3: ") and "per epoch, about" in lines[1] and "left" in lines[1]
    assert "best" not in lines[1]
    assert lines[3].startswith("epoch 3 of 3: ") and lines[3].endswith("best mean Dice 0.6125 (epoch 2)")


def test_progress_says_when_the_budget_ends_first(caplog):
    trainer = Engine(lambda engine, batch: None)
    TrainingProgress(max_minutes=1e-9).attach(trainer)
    with caplog.at_level(logging.INFO, logger="monai_pipeline.training.progress"):
        trainer.run([0], max_epochs=3)
    assert "about 0 s left (the time budget ends first)" in caplog.text


def test_gpu_sized_network_on_the_cpu_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING):
        assert warn_if_slow_on_cpu(torch.device("cpu"), [96, 96, 96], [32, 64, 128, 256, 320])
    assert "a step can take about a minute; on a CPU add --config cpu" in caplog.text
    assert not warn_if_slow_on_cpu("cpu", [48, 48, 48], [16, 32, 64, 128])
    assert not warn_if_slow_on_cpu("cuda", [96, 96, 96], [32, 64, 128, 256, 320])


def test_fine_tuning_log_says_when_the_encoder_is_frozen_and_unfrozen(caplog):
    network = build_network(filters=(4, 8, 16))
    trainer = Engine(lambda engine, batch: None)
    FreezeEncoder(network, epochs=2).attach(trainer)
    with caplog.at_level(logging.INFO, logger="monai_pipeline.training.finetune"):
        trainer.run([0], max_epochs=4)
    lines = [r.getMessage() for r in caplog.records if r.name == "monai_pipeline.training.finetune"]
    assert lines == [
        "encoder frozen for epochs 1 to 2: only the decoder trains",
        "encoder unfrozen from epoch 3: every layer trains",
    ]


def test_demo_reads_the_epochs_trained(tmp_path: Path):
    assert _epochs_trained(tmp_path) == 0
    (tmp_path / "training_log.csv").write_text("epoch,train_loss\n1,0.9\n2,0.8\n16,0.5\n")
    assert _epochs_trained(tmp_path) == 16


@pytest.mark.parametrize(("trained", "epochs", "warned"), [(16, 100, True), (58, 100, False), (1, 1, False)])
def test_demo_warns_when_too_few_epochs_ran_to_learn_tumours(trained, epochs, warned, capsys):
    _warn_if_short(trained, epochs, 7.5)
    out = capsys.readouterr().out
    assert ("warning: only 16 epochs ran in the 7.5-minute budget" in out) == warned
    if warned:
        assert f"about {TUMOUR_EPOCHS} before it finds tumours" in out and "--minutes 19" in out
