"""The trainer on cached frozen maps: one view per epoch in turn, and the weight average it can end on."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from classifier.fusion.modeling import FusionModel, TextBatch
from classifier.fusion.prepared import SplitData
from classifier.fusion.text import EntityExtractor
from classifier.fusion.training import WeightAverage, train_model

from .factories import LEAVES, tiny_config, tiny_snapshot, v2_config

# the `data_dir` fixture fails with what to install when the catalogue is missing (never a silent skip)
pytestmark = pytest.mark.usefixtures("data_dir")


def cached_config(**kw):
    """Blocks 0-10 frozen: training reads the cached stride-8/16 maps (64 px), four rows a batch."""
    return v2_config(frozen_blocks=11, batch_size=4, attention_weight=0.5, **kw)


def view(marker: float, n: int) -> tuple[tuple[np.ndarray, np.ndarray, None], np.ndarray]:
    """Maps of ``n`` images filled with ``marker`` (which view the trainer read shows in the stride-8 map)."""
    s8 = np.full((n, 40, 8, 8), marker, dtype=np.float16)
    s16 = np.full((n, 112, 4, 4), marker, dtype=np.float16)
    return (s8, s16, None), np.full((n, 8, 8), 0.5, dtype=np.float16)


def half(text: TextBatch) -> TextBatch:
    return replace(text, hidden=text.hidden.half())  # as Prepared caches MiniLM's outputs


def prepared(encoder, cfg, n: int = 8) -> SimpleNamespace:
    """What ``train_model`` reads of a ``Prepared``: the train split with plain maps and two views."""
    snapshot = tiny_snapshot()
    extractor = EntityExtractor(snapshot)
    titles = ["Puma Men Blue Tshirts", "Titan Women Watches"] * (n // 2)
    text = half(encoder.encode(titles, extractor))
    train = SplitData(
        rows=[None] * n,  # the trainer counts them only
        images=None,
        full=text,
        vague=text,
        labels=torch.tensor([0, 2] * (n // 2)),
        vague_titles=titles,
        views=[view(0.0, n), view(1.0, n), view(2.0, n)],
    )
    return SimpleNamespace(
        splits={"train": train},
        leaves=list(LEAVES),
        snapshot=snapshot,
        category_text=encoder.sentence_embeddings(list(LEAVES)),
        empty=half(encoder.encode([""], extractor)),
    )


def test_training_reads_the_plain_maps_then_each_augmented_view_in_turn(encoder, monkeypatch):
    cfg = cached_config(epochs=5, augmented_views=2)
    prep = prepared(encoder, cfg)
    read: list[float] = []
    original = FusionModel.stages_from_early

    def spy(self, s8, s16, mid=None):
        read.append(float(s8.float().mean()))
        return original(self, s8, s16, mid)

    monkeypatch.setattr(FusionModel, "stages_from_early", spy)
    train_model(prep, cfg, log=lambda _: None)
    # 8 rows in batches of 4: two batches per epoch, each from that epoch's view
    assert read == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0]


def test_training_can_end_on_the_moving_average_of_its_weights(encoder):
    cfg = cached_config(epochs=2, weight_average_decay=0.9)
    prep = prepared(encoder, cfg)
    last: dict[str, torch.Tensor] = {}

    def keep_last(epoch: int, model: FusionModel) -> None:
        # trainable_state() shares storage with the weights the average is then copied into
        last.update({k: v.clone() for k, v in model.trainable_state().items()})

    model = train_model(prep, cfg, log=lambda _: None, on_epoch=keep_last)
    kept = model.trainable_state()
    assert kept.keys() == last.keys()
    assert not any(k.startswith("backbone.net._blocks.10.") for k in kept)  # frozen: never averaged
    changed = [k for k in kept if kept[k].is_floating_point() and not torch.equal(kept[k], last[k])]
    assert any(k.startswith("backbone.net._blocks.15.") for k in changed)
    assert any(k.startswith("head.") for k in changed)


def test_weight_average_follows_the_weights_with_a_warming_decay():
    torch.manual_seed(0)
    model = FusionModel(tiny_config(), len(LEAVES))
    average = WeightAverage(model, decay=0.5)
    name, param = next(iter(model.named_parameters()))
    start = param.detach().clone()
    with torch.no_grad():
        param.add_(1.0)
    average.update()  # step 0: decay min(0.5, 1 / 10) = 0.1, so 90% of the new weights
    assert torch.allclose(average.average[name], start + 0.9)
    with torch.no_grad():
        param.add_(1.0)
    average.update()  # step 1: min(0.5, 2 / 11)
    d = 2 / 11
    assert torch.allclose(average.average[name], d * (start + 0.9) + (1 - d) * (start + 2.0))
    average.copy_to(model)
    assert torch.equal(param.detach(), average.average[name])
