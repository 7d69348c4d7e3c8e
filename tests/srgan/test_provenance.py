"""Provenance says where and in what arithmetic the generator ran, in every form an output carries."""
import json

from srgan.provenance import DISCLAIMER, Provenance


def test_runtime_and_precision_are_in_every_form():
    p = Provenance(model="srresnet_lite", weights_name="w", weights_sha256="ab" * 32, scale=2,
                   runtime="openvino", precision="bf16")
    assert "runtime openvino bf16" in p.long() and p.long().endswith(f"{DISCLAIMER}.")
    d = json.loads(p.to_json())
    assert d["runtime"] == "openvino" and d["precision"] == "bf16" and d["disclaimer"] == DISCLAIMER
    assert len(p.short()) <= 80 and "AI-enhanced" in p.short()


def test_the_defaults_are_torch_fp32():
    p = Provenance(model="nearest", weights_name="none", weights_sha256="0" * 64, scale=4)
    assert (p.runtime, p.precision) == ("torch", "fp32") and "runtime torch fp32" in p.long()
