"""A folder of 2D images: batched planning and generator calls, read-ahead and write-behind give the same PNGs as
enhancing each image alone (the path of one image file), on real Kaggle slices."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srgan.inference.engine import Enhancer
from srgan.inference.files import enhance_image_file, enhance_image_folder
from srgan.io.images import find_images


def _kaggle_folder(shared_data: Path, dst: Path) -> list[Path]:
    """64² 8-bit PNGs made by bicubic downsampling of Kaggle slices of every class, one 80×64 of another size, a
    16-bit one, a blank one and an unreadable one."""
    jpgs = sorted((shared_data / "kaggle-brain-tumor-mri").rglob("*.jpg"))[::23][:11]
    assert len(jpgs) == 11
    (dst / "sub").mkdir(parents=True)
    for i, jpg in enumerate(jpgs):
        gray = Image.open(jpg).convert("L")
        size = (80, 64) if i == 5 else (64, 64)
        gray.resize(size, Image.Resampling.BICUBIC).save(dst / ("sub" if i % 3 else ".") / f"s{i:02d}.png")
    wide = np.asarray(Image.open(jpgs[0]).convert("L").resize((64, 64), Image.Resampling.BICUBIC), dtype=np.uint16)
    Image.fromarray(wide * 257).save(dst / "s16bit.png")
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(dst / "blank.png")
    (dst / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return find_images(dst)


@pytest.mark.parametrize("consistency", ["auto", "off", "kspace"])
def test_folder_equals_one_image_at_a_time(shared_data, tmp_path, consistency):
    src = tmp_path / "in"
    images = _kaggle_folder(shared_data, src)
    enhancer = Enhancer(scale=4, device="cpu", consistency=consistency, batch=4)
    lines: list[str] = []
    report = enhance_image_folder(src, tmp_path / "out", enhancer, images, lines.append)

    readable = [p for p in images if p.name != "broken.png"]
    assert report.written == [tmp_path / "out" / p.relative_to(src) for p in readable]
    assert [(p.name, why) for p, why in report.failed] == [("broken.png", report.failed[0][1])]
    assert "not a readable" in report.failed[0][1] or "corrupt" in report.failed[0][1]
    # logged in the folder's order, the failure in its place
    assert [int(line.split("/")[0][1:]) for line in lines] == list(range(1, len(images) + 1))
    assert "skipped" in lines[images.index(src / "broken.png")]

    alone = tmp_path / "alone"
    plans = {}
    for p in readable:
        dst = alone / p.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        _, plans[p] = enhance_image_file(p, dst, enhancer)
    if consistency == "auto":  # the folder's images were not all decided alike, so each had a plan of its own
        assert len({plans[p].model_p for p in readable}) > 1
    for p, out in zip(readable, report.written):
        a, b = Image.open(out), Image.open(alone / p.relative_to(src))
        assert (a.mode, a.size) == (b.mode, b.size)
        assert np.array_equal(np.asarray(a), np.asarray(b)), p.name
    assert Image.open(tmp_path / "out" / "s16bit.png").mode.startswith("I")
    assert Image.open(tmp_path / "out" / "sub" / "s05.png").size == (320, 256)


def test_plan_images_equals_plan_of_each_image(shared_data):
    jpgs = sorted((shared_data / "kaggle-brain-tumor-mri").rglob("*.jpg"))[5::40]
    lrs = [
        np.asarray(Image.open(j).convert("L").resize((64, 64), Image.Resampling.BICUBIC), np.float32) / 255
        for j in jpgs
    ]
    enhancer = Enhancer(scale=4, device="cpu")
    together = enhancer.plan_images(lrs)
    for lr, plan in zip(lrs, together):
        alone = enhancer.plan(lr[None])
        assert (plan.p_kspace, plan.model_p, plan.projection, plan.log_ratio, plan.outer_energy) == (
            alone.p_kspace,
            alone.model_p,
            alone.projection,
            alone.log_ratio,
            alone.outer_energy,
        )
        assert plan.outputs.keys() == alone.outputs.keys()
        for k in plan.outputs:
            assert np.array_equal(plan.outputs[k], alone.outputs[k])
