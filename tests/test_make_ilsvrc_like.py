"""scripts/make_ilsvrc_like.py: the ILSVRC-shaped scale set keeps the source's sizes, classes and boxes in both forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import load_script

from wsol.data.formats import read_devkit_xml, read_synsets

SOURCE = {  # three val images as wsolevaluation's metadata has them; the fourth is not asked for
    "image_ids.txt": "val/ILSVRC2012_val_00000001.JPEG\nval/ILSVRC2012_val_00000002.JPEG\n"
                     "val/ILSVRC2012_val_00000003.JPEG\nval/ILSVRC2012_val_00000004.JPEG\n",
    "class_labels.txt": "val/ILSVRC2012_val_00000001.JPEG,65\nval/ILSVRC2012_val_00000002.JPEG,970\n"
                        "val/ILSVRC2012_val_00000003.JPEG,230\nval/ILSVRC2012_val_00000004.JPEG,809\n",
    "image_sizes.txt": "val/ILSVRC2012_val_00000001.JPEG,500,375\nval/ILSVRC2012_val_00000002.JPEG,333,500\n"
                       "val/ILSVRC2012_val_00000003.JPEG,64,48\nval/ILSVRC2012_val_00000004.JPEG,500,375\n",
    "localization.txt": "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193\n"
                        "val/ILSVRC2012_val_00000002.JPEG,45,49,299,162\nval/ILSVRC2012_val_00000002.JPEG,2,69,137,207\n"
                        "val/ILSVRC2012_val_00000003.JPEG,0,0,63,47\nval/ILSVRC2012_val_00000004.JPEG,1,2,3,4\n",
}


@pytest.fixture(scope="module")
def gen():
    return load_script("make_ilsvrc_like")


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "source"
    folder.mkdir()
    for name, text in SOURCE.items():
        (folder / name).write_text(text)
    return folder


def test_first_n_images_keep_sizes_classes_and_boxes(gen, source: Path, tmp_path: Path) -> None:
    out = gen.make(source, 3, tmp_path / "set")
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt"):
        assert (out / "metadata" / "test" / name).read_text().splitlines() == SOURCE[name].splitlines()[:3]
    assert (out / "metadata" / "test" / "localization.txt").read_text().splitlines() == \
        SOURCE["localization.txt"].splitlines()[:4]
    sizes = [Image.open(out / "images" / "val" / f"ILSVRC2012_val_0000000{i}.JPEG").size for i in (1, 2, 3)]
    assert sizes == [(500, 375), (333, 500), (64, 48)]
    assert not (out / "images" / "val" / "ILSVRC2012_val_00000004.JPEG").exists()
    # the XML form reads back to the same labels and boxes (made-up WNIDs keep the label order)
    wnids = read_synsets(out / "LOC_synset_mapping.txt")[0]
    assert len(wnids) == 1000 and wnids == sorted(wnids)
    xml = read_devkit_xml(out / "Annotations" / "CLS-LOC" / "val", wnids, id_template="val/{filename}.JPEG",
                          on_error="raise", box_tolerance=1.0)
    got = {r.image_id: (r.label, r.size, r.boxes.tolist()) for r in xml.records}
    assert got == {"val/ILSVRC2012_val_00000001.JPEG": (65, (500, 375), [[111, 108, 441, 193]]),
                   "val/ILSVRC2012_val_00000002.JPEG": (970, (333, 500), [[45, 49, 299, 162], [2, 69, 137, 207]]),
                   "val/ILSVRC2012_val_00000003.JPEG": (230, (64, 48), [[0, 0, 63, 47]])}
    # the object is drawn where its box is: the box fills image 3, whose colour is class 230's
    pixels = np.asarray(Image.open(out / "images" / "val" / "ILSVRC2012_val_00000003.JPEG"))
    assert np.abs(pixels[24, 32].astype(int) - np.array(gen._colour(230))).max() < 20


def test_a_matching_set_is_reused_and_another_refused(gen, source: Path, tmp_path: Path) -> None:
    out = gen.make(source, 2, tmp_path / "set")
    stamp = (out / "manifest.json").stat().st_mtime_ns
    gen.make(source, 2, out)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(SystemExit, match="not this set"):
        gen.make(source, 3, out)
    (source / "localization.txt").write_text(SOURCE["localization.txt"].replace("111,108", "112,108"))
    with pytest.raises(SystemExit, match="not this set"):  # same N, other source content
        gen.make(source, 2, out)
    gen.make(source, 2, out, force=True)
    assert (out / "metadata" / "test" / "localization.txt").read_text().startswith(
        "val/ILSVRC2012_val_00000001.JPEG,112,108")
    with pytest.raises(SystemExit, match="fewer than --n 9"):
        gen.make(source, 9, tmp_path / "other")
