import json

import pytest
import torch

from srgan.errors import InputError
from srgan.models.weights import bundled_weights, list_bundled, load_weights, read_card


def test_round_trip_rebuilds_same_model(tiny_weights):
    model, card = load_weights(tiny_weights)
    assert card["arch"] == "srresnet_lite" and card["kwargs"]["scale"] == 2
    assert len(card["sha256"]) == 64 and card["parameters"] == sum(p.numel() for p in model.parameters())
    again, _ = load_weights(tiny_weights)
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_tampered_file_is_refused(tiny_weights, tmp_path):
    bad = tmp_path / tiny_weights.name
    data = bytearray(tiny_weights.read_bytes())
    data[-1] ^= 0xFF
    bad.write_bytes(bytes(data))
    (tmp_path / (tiny_weights.stem + ".json")).write_text(tiny_weights.with_suffix(".json").read_text())
    with pytest.raises(InputError, match="sha256"):
        load_weights(bad)


def test_missing_card_and_file_are_clear(tiny_weights, tmp_path):
    lone = tmp_path / "lone.safetensors"
    lone.write_bytes(tiny_weights.read_bytes())
    with pytest.raises(InputError, match="model card missing"):
        load_weights(lone)
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "absent.safetensors")


def test_bundled_lookup(tiny_weights, tiny_weights_x4):
    d = tiny_weights.parent
    (d / tiny_weights_x4.name).write_bytes(tiny_weights_x4.read_bytes())
    (d / (tiny_weights_x4.stem + ".json")).write_text(tiny_weights_x4.with_suffix(".json").read_text())
    cards = list_bundled(d)
    assert [c["kwargs"]["scale"] for c in cards] == [2, 4]
    assert bundled_weights(4, directory=d).name == tiny_weights_x4.name
    assert bundled_weights(2, "tiny-x2", directory=d) == tiny_weights
    with pytest.raises(InputError, match="not x4"):
        bundled_weights(4, "tiny-x2", directory=d)
    with pytest.raises(InputError, match="no bundled model named"):
        bundled_weights(2, "nope", directory=d)


def test_card_is_json(tiny_weights):
    card = read_card(tiny_weights)
    assert json.loads(json.dumps(card)) == card


def test_a_bundled_card_recommends_bf16_only_with_its_measured_loss_within_the_bar():
    """Issue 17's rule: reduced precision is the default only where the card says it was measured to cost at most
    0.05 dB of held-out PSNR (mean) and names the measurement."""
    cards = list_bundled()
    assert cards
    for card in cards:
        precision = card.get("precision") or {}
        if precision.get("bf16_ok") is True:
            assert precision["heldout_delta_db"] >= -0.05 and precision["measured"], card["name"]
