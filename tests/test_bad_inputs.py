"""Hostile inputs, one table per kind of input, each case named with its expected outcome.

Outcomes: ``error`` (a clear error whose message holds every listed fragment: the file and line, or the value, and
the reason), ``skip`` (``on_error="skip"`` drops that image and lists it with the reason, as ``metrics.json``
shows it), or ``ok`` (the input is legal and reads as intended). Nothing may give a number silently.

Ground-truth cases run through every consumer of the one metadata reader: the dataset factory behind
``wsol-evaluate``, ``wsol-prepare check``, ``wsol-score devkit`` and ``wsol-score scoremaps``; each must refuse
(or accept) the same input with the same message.

The last tables are about the commands themselves: how the tools end (``GUARD``: an ``OSError`` or a Ctrl-C is one
line saying what is kept), and hostile values given to ``wsol-run``/``wsol-train``/``wsol-evaluate``
(``COMMANDS``: a run name that is not one folder name, stored CAMs scored as another split or frame, a run dir whose
results another config would replace), each refused with exit code 2, nothing of a finished run changed.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from wsol.conf import yaml_data_options
from wsol.data.datasets import SkippedImage, build_source, load_or_skip, record_skipped, split_skipped
from wsol.data.images import ImageLoadError
from wsol.data.metadata import AnnotationError, read_metadata, write_metadata
from wsol.data.records import Annotations, ImageRecord

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # ours follows
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_non_root = pytest.mark.skipif(AS_ROOT, reason="permissions are not enforced for root")

# The baseline data set: three images (one id with a space), labels 0..2, one box each (inclusive pixels).
IMAGES = {  # id: (label, (width, height), box)
    "val/a.jpg": (0, (20, 16), (2, 3, 10, 12)),
    "val/b.jpg": (1, (16, 20), (0, 0, 15, 19)),
    "val/c d.jpg": (2, (24, 24), (4, 4, 19, 19)),
}
NUM_CLASSES = 3
#: The readers' options as a run passes them (the format's configs/data/<name>.yaml, their one home).
ILSVRC_READ = {"box_tolerance": yaml_data_options("ilsvrc")["box_tolerance"]}
CUB_READ = {"box_tolerance": yaml_data_options("cub")["box_tolerance"]}
METADATA_READ = {k: yaml_data_options("wsol_metadata")[k] for k in ("box_tolerance", "max_image_pixels")}


def _jpeg(size: tuple[int, int], **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 60, 20)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def _noise(size: tuple[int, int]) -> Image.Image:
    """Incompressible pixels, so that cutting a file's last third cuts pixel data, not its header."""
    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _baseline(tmp_path: Path) -> Path:
    """``root/images``, ``root/metadata``, perfect 224x224 score maps in ``root/maps`` and ``root/pred.txt``."""
    from wsol.boxes import resize_boxes

    root = tmp_path / "ds"
    meta = root / "metadata"
    meta.mkdir(parents=True)
    for image_id, (_, size, box) in IMAGES.items():
        path = root / "images" / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_jpeg(size))
        scoremap = np.zeros((224, 224), dtype=np.float32)
        x0, y0, x1, y1 = resize_boxes(np.array([box]), size, (224, 224), truncate=True)[0]
        scoremap[y0:y1 + 1, x0:x1 + 1] = 1.0
        target = root / "maps" / f"{image_id}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, scoremap)
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in IMAGES))
    (meta / "class_labels.txt").write_text("".join(f"{i},{label}\n" for i, (label, _, _) in IMAGES.items()))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, (_, (w, h), _) in IMAGES.items()))
    (meta / "localization.txt").write_text("".join(f"{i},{','.join(map(str, b))}\n" for i, (_, _, b) in IMAGES.items()))
    (root / "pred.txt").write_text("".join(f"{label} {' '.join(map(str, b))}\n" for label, _, b in IMAGES.values()))
    return root


def _edit(name: str, transform: Callable[[str], str]) -> Callable[[Path], None]:
    """A mutation rewriting ``metadata/<name>`` through ``transform`` (UTF-8 text)."""
    def mutate(root: Path) -> None:
        path = root / "metadata" / name
        path.write_text(transform(path.read_text()))
    return mutate


def _append(name: str, text: str) -> Callable[[Path], None]:
    return _edit(name, lambda old: old + text)


def _replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def transform(content: str) -> str:
        assert old in content, (name, old)
        return content.replace(old, new)
    return _edit(name, transform)


def _write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / "metadata" / name).write_bytes(data)
    return mutate


def _make_dir(name: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / "metadata" / name).unlink()
        (root / "metadata" / name).mkdir()
    return mutate


def _chmod(name: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        (root / "metadata" / name).chmod(0)
    return mutate


def _rename_id(old: str, new: str) -> Callable[[Path], None]:
    """Rename an image id in every metadata file (the files on disk stay where they are)."""
    def mutate(root: Path) -> None:
        for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
            path = root / "metadata" / name
            path.write_text("\n".join(line.replace(old, new, 1) for line in path.read_text().split("\n")))
        outside = root.parent / "outside.jpg"  # a real file the id would reach if it were followed
        outside.write_bytes(_jpeg((20, 16)))
    return mutate


def _all(*mutations: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        for mutation in mutations:
            mutation(root)
    return mutate


@dataclass(frozen=True)
class Case:
    """A hostile input and its expected outcome.

    Attributes:
        mutate: turns the baseline data set into the hostile one.
        outcome: ``"error"`` or ``"ok"``.
        fragments: every one must appear in the error message (file:line and value).
        skips: for an error tied to one image, the id ``on_error="skip"`` drops and lists; ``None`` when the
            error is not a data error of one image and raises under every policy.
        marks: pytest marks (e.g. skip as root).
    """

    mutate: Callable[[Path], None]
    outcome: str = "error"
    fragments: tuple[str, ...] = ()
    skips: str | None = None
    marks: tuple = field(default_factory=tuple)


LATIN1 = "val/a.jpg,0\nval/b.jpg,1\nval/c d.jpg,2\n".replace("val/b.jpg", "val/b\u00e9.jpg").encode("latin-1")
CRLF = ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt")

GROUND_TRUTH: dict[str, Case] = {
    # ---- ids
    "duplicate-id": Case(_append("image_ids.txt", "val/a.jpg\n"),
                         fragments=("image_ids.txt:4: error: duplicate image id 'val/a.jpg' (first on line 1)",),
                         skips="val/a.jpg"),
    "id-with-comma": Case(_append("image_ids.txt", "val/x,y.jpg\n"),
                          fragments=("image_ids.txt:4: error: image id 'val/x,y.jpg' contains a comma",)),
    "id-dotdot": Case(_rename_id("val/a.jpg", "../../outside.jpg"),
                      fragments=("image_ids.txt:1: error: image id '../../outside.jpg' is not a relative path",
                                 "climbs out of its root")),
    "id-dotdot-inside": Case(_rename_id("val/a.jpg", "val/../val/a.jpg"),
                             fragments=("image_ids.txt:1", "'val/../val/a.jpg'", "climbs out")),
    "id-absolute": Case(_rename_id("val/a.jpg", "/etc/hostname"),
                        fragments=("image_ids.txt:1", "'/etc/hostname'", "is an absolute path")),
    "id-backslash": Case(_rename_id("val/a.jpg", "val\\a.jpg"),
                         fragments=("image_ids.txt:1", "backslash")),
    "id-drive-letter": Case(_rename_id("val/a.jpg", "C:/val/a.jpg"),
                            fragments=("image_ids.txt:1", "drive letter")),
    "id-dot-component": Case(_rename_id("val/a.jpg", "./val/a.jpg"), fragments=("image_ids.txt:1", "'.' component")),
    "id-empty-component": Case(_rename_id("val/a.jpg", "val//a.jpg"), fragments=("image_ids.txt:1", "empty path")),
    "id-nul-byte": Case(_rename_id("val/a.jpg", "val/a\x00.jpg"), fragments=("image_ids.txt:1", "control character")),
    "id-tab": Case(_rename_id("val/a.jpg", "val/a\t.jpg"), fragments=("image_ids.txt:1", "control character")),
    # ---- labels
    "conflicting-labels": Case(_append("class_labels.txt", "val/a.jpg,1\n"),
                               fragments=("class_labels.txt:4: error: 'val/a.jpg' labelled 1 here but 0 on line 1",),
                               skips="val/a.jpg"),
    "label-out-of-range": Case(_replace("class_labels.txt", "val/c d.jpg,2", "val/c d.jpg,3"),
                               fragments=("class_labels.txt:3: error: 'val/c d.jpg': label 3 outside [0, 2]",),
                               skips="val/c d.jpg"),
    "label-negative": Case(_replace("class_labels.txt", "val/a.jpg,0", "val/a.jpg,-1"),
                           fragments=("class_labels.txt:1", "label -1 outside [0, 2]"), skips="val/a.jpg"),
    "label-1e3": Case(_replace("class_labels.txt", "val/a.jpg,0", "val/a.jpg,1e3"),
                      fragments=("class_labels.txt:1", "label '1e3' of 'val/a.jpg' is not an integer"),
                      skips="val/a.jpg"),
    "label-underscore": Case(_replace("class_labels.txt", "val/b.jpg,1", "val/b.jpg,0_1"),
                             fragments=("class_labels.txt:2", "label '0_1'", "not an integer"), skips="val/b.jpg"),
    "label-float": Case(_replace("class_labels.txt", "val/b.jpg,1", "val/b.jpg,1.0"),
                        fragments=("class_labels.txt:2", "'1.0'", "not an integer"), skips="val/b.jpg"),
    "label-non-ascii-digit": Case(_replace("class_labels.txt", "val/b.jpg,1", "val/b.jpg,\u0661"),
                                  fragments=("class_labels.txt:2", "not an integer"), skips="val/b.jpg"),
    "label-huge": Case(_replace("class_labels.txt", "val/b.jpg,1", "val/b.jpg,99999999999999999999"),
                       fragments=("class_labels.txt:2", "label 99999999999999999999 outside [0, 2]"),
                       skips="val/b.jpg"),
    "label-missing": Case(_edit("class_labels.txt", lambda s: s.replace("val/b.jpg,1\n", "")),
                          fragments=("class_labels.txt: error: no label for 'val/b.jpg' (line 2 of image_ids.txt)",),
                          skips="val/b.jpg"),
    "labels-empty-file": Case(_write_bytes("class_labels.txt", b""),  # skipping every image leaves nothing
                              fragments=("class_labels.txt: error: no label for 'val/a.jpg'",)),
    "label-trailing-comma": Case(_replace("class_labels.txt", "val/a.jpg,0", "val/a.jpg,0,"),
                                 fragments=("class_labels.txt:1", "expected 'image_id,label' (2 fields), got 3 fields"),
                                 skips="val/a.jpg"),
    # ---- image sizes
    "size-zero": Case(_replace("image_sizes.txt", "val/a.jpg,20,16", "val/a.jpg,0,16"),
                      fragments=("image_sizes.txt:1", "size of 'val/a.jpg' must be two positive integers"),
                      skips="val/a.jpg"),
    "size-negative": Case(_replace("image_sizes.txt", "val/a.jpg,20,16", "val/a.jpg,-20,16"),
                          fragments=("image_sizes.txt:1", "two positive integers"), skips="val/a.jpg"),
    "size-float": Case(_replace("image_sizes.txt", "val/a.jpg,20,16", "val/a.jpg,20.0,16"),
                       fragments=("image_sizes.txt:1", "two positive integers"), skips="val/a.jpg"),
    "size-huge": Case(_replace("image_sizes.txt", "val/a.jpg,20,16", "val/a.jpg,100000,100000"),
                      fragments=("image_sizes.txt:1", "100000x100000 = 10,000,000,000 pixels", "image size limit"),
                      skips="val/a.jpg"),
    "size-conflicting-duplicate": Case(_append("image_sizes.txt", "val/a.jpg,16,20\n"),
                                       fragments=("image_sizes.txt:4", "has size 16x20 here but 20x16 on line 1"),
                                       skips="val/a.jpg"),
    "size-missing": Case(_edit("image_sizes.txt", lambda s: s.replace("val/b.jpg,16,20\n", "")),
                         fragments=("image_sizes.txt: error: no size for 'val/b.jpg'",), skips="val/b.jpg"),
    # ---- boxes
    "box-inverted": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,10,3,2,12"),
                         fragments=("localization.txt:1: error: 'val/a.jpg': box (10, 3, 2, 12) is inverted",),
                         skips="val/a.jpg"),
    "box-nan": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,2,3,nan,12"),
                    fragments=("localization.txt:1", "non-numeric or non-finite coordinate"), skips="val/a.jpg"),
    "box-inf": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,2,3,inf,12"),
                    fragments=("localization.txt:1", "non-finite"), skips="val/a.jpg"),
    "box-overflow-1e400": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,2,3,1e400,12"),
                               fragments=("localization.txt:1", "non-finite"), skips="val/a.jpg"),
    "box-outside": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,2,3,25,12"),
                        fragments=("localization.txt:1", "lies outside the 20x16 image by more than 1 px"),
                        skips="val/a.jpg"),
    "box-negative": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,-5,3,10,12"),
                         fragments=("localization.txt:1", "box (-5, 3, 10, 12) lies outside"), skips="val/a.jpg"),
    "box-missing": Case(_edit("localization.txt", lambda s: s.replace("val/b.jpg,0,0,15,19\n", "")),
                        fragments=("localization.txt: error: no box for 'val/b.jpg'",), skips="val/b.jpg"),
    "box-trailing-comma-first-line": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12", "val/a.jpg,2,3,10,12,"),
                                          fragments=("localization.txt:1", "got 6 fields")),
    "box-trailing-comma": Case(_replace("localization.txt", "val/b.jpg,0,0,15,19", "val/b.jpg,0,0,15,19,"),
                               fragments=("localization.txt:2", "(5 fields), got 6 fields"), skips="val/b.jpg"),
    "box-mask-line-in-box-file": Case(_append("localization.txt", "val/a.jpg,m.png,\n"),
                                      fragments=("localization.txt:4", "expected 'image_id,x0,y0,x1,y1'"),
                                      skips="val/a.jpg"),
    # ---- text encoding and files
    "labels-latin1": Case(_all(_write_bytes("class_labels.txt", LATIN1),
                               _replace("image_ids.txt", "val/b.jpg", "val/b\u00e9.jpg")),
                          fragments=("class_labels.txt:2: error: not UTF-8 text: byte 0xe9 at column 6",)),
    "ids-utf16": Case(_write_bytes("image_ids.txt", "val/a.jpg\nval/b.jpg\nval/c d.jpg\n".encode("utf-16")),
                      fragments=("image_ids.txt:1: error: not UTF-8 text: byte 0xff at column 1",)),
    "ids-empty-file": Case(_write_bytes("image_ids.txt", b""), fragments=("image_ids.txt: error: no image id",)),
    "ids-is-a-directory": Case(_make_dir("image_ids.txt"),
                               fragments=("image_ids.txt: error: is a directory, expected a text file",)),
    "localization-is-a-directory": Case(_make_dir("localization.txt"),
                                        fragments=("localization.txt: error: is a directory",)),
    "labels-unreadable": Case(_chmod("class_labels.txt"), fragments=("class_labels.txt", "cannot be read"),
                              marks=(needs_non_root,)),
    # ---- legal inputs that must keep reading, with the same numbers
    "ok-bom-everywhere": Case(_all(*(_edit(n, lambda s: "\ufeff" + s) for n in CRLF)), outcome="ok"),
    "ok-crlf": Case(_all(*(_edit(n, lambda s: s.replace("\n", "\r\n")) for n in CRLF)), outcome="ok"),
    "ok-cr-only": Case(_all(*(_edit(n, lambda s: s.replace("\n", "\r")) for n in CRLF)), outcome="ok"),
    "ok-blank-lines-spaces-no-final-newline": Case(
        _all(_edit("class_labels.txt", lambda s: "\n\n" + s.replace(",", " , ").rstrip("\n")),
             _edit("localization.txt", lambda s: s.replace("\n", "\n\n"))), outcome="ok"),
    "ok-float-boxes-of-rescaled-images": Case(_replace("localization.txt", "val/a.jpg,2,3,10,12",
                                                       "val/a.jpg,2.0,3.0e0,10.4,12.25"), outcome="ok"),
    "ok-warning-label-of-unknown-id": Case(_append("class_labels.txt", "val/zzz.jpg,1\n"), outcome="ok"),
    "ok-warning-same-size-twice": Case(_append("image_sizes.txt", "val/a.jpg,20,16\n"), outcome="ok"),
}


def _evaluate(root: Path, on_error: str = "raise"):  # noqa: ANN202
    return build_source("wsol_metadata", split="test", root=root, num_classes=NUM_CLASSES, on_error=on_error,
                        **yaml_data_options("wsol_metadata"))


def _check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from wsol.prepare import main

    code = main(["check", "--root", str(root), "--num-classes", str(NUM_CLASSES)])
    return code, capsys.readouterr().err


def _score(root: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from wsol.score import main

    common = ["--gt", str(root), "--num-classes", str(NUM_CLASSES)]
    argv = (["devkit", "--pred", str(root / "pred.txt"), *common] if mode == "devkit"
            else ["scoremaps", "--scoremap-root", str(root / "maps"), *common, "--cam-curve-interval", "0.5"])
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


CONSUMERS = ("wsol-evaluate", "wsol-prepare-check", "wsol-score-devkit", "wsol-score-scoremaps")


@pytest.mark.parametrize("consumer", CONSUMERS)
@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks, id=n) for n, c in GROUND_TRUTH.items()])
def test_ground_truth(name: str, consumer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    case = GROUND_TRUTH[name]
    root = _baseline(tmp_path)
    case.mutate(root)
    if consumer == "wsol-evaluate":
        if case.outcome == "ok":
            source = _evaluate(root)
            assert [r.label for r in source.annotations.records] == [0, 1, 2] and not source.annotations.skipped
            return
        with pytest.raises((AnnotationError, ValueError)) as raised:
            _evaluate(root)
        for fragment in case.fragments:
            assert fragment in str(raised.value)
        if case.skips is None:  # not a data error of one image: no policy skips it
            with pytest.raises((AnnotationError, ValueError)):
                _evaluate(root, on_error="skip")
        else:
            skipped = _evaluate(root, on_error="skip").annotations.skipped
            assert list(skipped) == [case.skips] and case.fragments[-1] in skipped[case.skips]
    elif consumer == "wsol-prepare-check":
        code, err = _check(root, capsys)
        assert code == (0 if case.outcome == "ok" else 1), err
        for fragment in case.fragments:
            assert fragment in err
    else:
        code, out, err = _score(root, consumer.rsplit("-", 1)[-1], capsys)
        if case.outcome == "ok":
            assert code == 0, err
            result = json.loads(out)
            if consumer == "wsol-score-devkit":
                assert result["top1_cls_err"] == 0.0 and result["top1_loc_err"] == 0.0
            else:
                assert result["maxboxacc"] == 100.0 and result["n_images"] == 3
            return
        assert code == 2 and not out
        for fragment in case.fragments:
            assert fragment in err


# ------------------------------------------------------------------------------------------------ image files
def _damage(image_id: str, transform: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        transform(root / "images" / image_id)
    return mutate


def _truncate(keep: float) -> Callable[[Path], None]:
    return lambda p: p.write_bytes(p.read_bytes()[: int(len(p.read_bytes()) * keep)])


def _huge_jpeg_header(width: int, height: int) -> Callable[[Path], None]:
    """A valid small JPEG whose SOF0 header claims ``width`` x ``height`` (the pixels are never needed)."""
    def write(path: Path) -> None:
        data = bytearray(_jpeg((20, 16)))
        sof = data.index(b"\xff\xc0")
        struct.pack_into(">HH", data, sof + 5, height, width)
        path.write_bytes(bytes(data))
    return write


def _save(make: Callable[[], Image.Image], fmt: str, tail: float = 1.0, extra: bytes = b"") -> Callable[[Path], None]:
    def write(path: Path) -> None:
        buffer = io.BytesIO()
        make().save(buffer, fmt)
        data = buffer.getvalue()
        path.write_bytes(data[: int(len(data) * tail)] + extra)
    return write


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _link_folder_outside(root: Path) -> None:
    """Move images/val to shared storage outside the root and link it back (a cluster's arrangement)."""
    shared = root.parent / "shared_storage" / "val"
    shared.parent.mkdir()
    (root / "images" / "val").rename(shared)
    (root / "images" / "val").symlink_to(shared, target_is_directory=True)


IMAGE_FILES: dict[str, Case] = {
    "truncated-jpeg-tail": Case(_damage("val/b.jpg", lambda p: p.write_bytes(p.read_bytes()[:-40])),
                                fragments=("b.jpg", "truncated"), skips="val/b.jpg"),
    "truncated-jpeg-eoi-only": Case(_damage("val/b.jpg", lambda p: p.write_bytes(p.read_bytes()[:-2])),
                                    fragments=("b.jpg", "truncated"), skips="val/b.jpg"),
    "truncated-progressive-jpeg": Case(
        _damage("val/b.jpg", _save(lambda: _noise((16, 20)), "JPEG", 0.7)),
        fragments=("b.jpg", "truncated"), skips="val/b.jpg"),
    "truncated-png-named-jpg": Case(_damage("val/b.jpg", _save(lambda: _noise((16, 20)), "PNG", 0.8)),
                                    fragments=("b.jpg", "truncated"), skips="val/b.jpg"),
    "truncated-bmp-named-jpg": Case(_damage("val/b.jpg", _save(lambda: _noise((16, 20)), "BMP", 0.7)),
                                    fragments=("b.jpg", "truncated"), skips="val/b.jpg"),
    "zero-byte-image": Case(_damage("val/b.jpg", lambda p: p.write_bytes(b"")),
                            fragments=("b.jpg", "empty file (0 bytes)"), skips="val/b.jpg"),
    "not-an-image": Case(_damage("val/b.jpg", lambda p: p.write_bytes(b"<html>404</html>" * 20)),
                         fragments=("b.jpg", "not a recognised image format"), skips="val/b.jpg"),
    "missing-image": Case(_damage("val/b.jpg", lambda p: p.unlink()), fragments=("b.jpg", "file not found"),
                          skips="val/b.jpg"),
    "directory-instead-of-image": Case(_damage("val/b.jpg", _replace_with_dir),
                                       fragments=("b.jpg", "not a regular file"), skips="val/b.jpg"),
    "wrong-size": Case(_damage("val/b.jpg", lambda p: p.write_bytes(_jpeg((20, 16)))),
                       fragments=("b.jpg", "size 20x16 differs from the metadata size 16x20"), skips="val/b.jpg"),
    "10000x10000-image": Case(
        _damage("val/b.jpg", _huge_jpeg_header(10000, 10000)),
        fragments=("b.jpg", "10000x10000 = 100,000,000 pixels exceeds the image size limit of 89,478,485"),
        skips="val/b.jpg"),
    "40000x40000-image-beyond-pillow": Case(
        _damage("val/b.jpg", _huge_jpeg_header(40000, 40000)),
        fragments=("b.jpg", "larger than the image size limit"), skips="val/b.jpg"),
    "unreadable-image": Case(_damage("val/b.jpg", lambda p: p.chmod(0)), fragments=("b.jpg", "cannot be read"),
                             skips="val/b.jpg", marks=(needs_non_root,)),
    "ok-bytes-after-jpeg-eoi": Case(_damage("val/b.jpg", lambda p: p.write_bytes(p.read_bytes() + b"\0" * 64)),
                                    outcome="ok"),
    "ok-png-named-jpg": Case(_damage("val/b.jpg", _save(lambda: Image.new("RGB", (16, 20)), "PNG")), outcome="ok"),
    "ok-bytes-after-png-iend": Case(
        _damage("val/b.jpg", _save(lambda: Image.new("RGB", (16, 20)), "PNG", extra=b"trailing")), outcome="ok"),
    "ok-gif": Case(_damage("val/b.jpg", _save(lambda: Image.new("P", (16, 20)), "GIF")), outcome="ok"),
    "ok-symlinked-image-folder": Case(_link_folder_outside, outcome="ok"),
}


@pytest.mark.parametrize("consumer", ["wsol-evaluate", "wsol-prepare-check", "load", "load-or-skip"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks, id=n) for n, c in IMAGE_FILES.items()])
def test_image_files(name: str, consumer: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Image files under the default check (``check_files=header``), and at load time (``check_files=none``)."""
    case = IMAGE_FILES[name]
    root = _baseline(tmp_path)
    case.mutate(root)
    if consumer == "wsol-evaluate":
        if case.outcome == "ok":
            source = _evaluate(root)
            assert len(source.annotations) == 3 and source.load(1).size == (16, 20)
            return
        with pytest.raises(AnnotationError) as raised:
            _evaluate(root)
        assert all(fragment in str(raised.value) for fragment in case.fragments), str(raised.value)
        skipped = _evaluate(root, on_error="skip").annotations.skipped
        assert list(skipped) == [case.skips] and all(f in skipped[case.skips] for f in case.fragments)
    elif consumer == "wsol-prepare-check":
        code, err = _check(root, capsys)
        assert code == (0 if case.outcome == "ok" else 1), err
        assert all(fragment in err for fragment in case.fragments), err
    else:
        # Unchecked files: the problem surfaces when the image is loaded, naming the file.
        on_error = "skip" if consumer == "load-or-skip" else "raise"
        source = build_source("wsol_metadata", split="test", root=root, num_classes=NUM_CLASSES, on_error=on_error,
                              **yaml_data_options("wsol_metadata", check_files="none"))
        if case.outcome == "ok":
            assert load_or_skip(source, 1).size == (16, 20)
            return
        if consumer == "load":
            with pytest.raises(ImageLoadError) as raised:
                source.load(1)
            assert all(fragment in str(raised.value) for fragment in case.fragments)
            with pytest.raises(ImageLoadError):
                load_or_skip(source, 1)  # the source was built to raise
        else:
            items = [load_or_skip(source, i) for i in range(3)]
            kept, skipped = split_skipped(items)
            assert len(kept) == 2 and [s.image_id for s in skipped] == [case.skips]
            record_skipped(source.annotations, skipped)
            assert all(f in source.annotations.skipped[case.skips] for f in case.fragments)


def test_size_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``max_image_pixels`` (data config / --max-image-pixels) moves the limit both ways; 0 is refused."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored: raising the limit raises it
    root = _baseline(tmp_path)
    with pytest.raises(AnnotationError, match=r"image_sizes.txt:3: error: size of 'val/c d.jpg' is 24x24 = 576 pixels, "
                                              r"over the image size limit of 500"):
        build_source("wsol_metadata", split="test", root=root, num_classes=3,
                     **yaml_data_options("wsol_metadata", max_image_pixels=500))
    sizes = (root / "metadata" / "image_sizes.txt").read_text()
    (root / "metadata" / "image_sizes.txt").write_text("")  # no sizes: the image header is what is refused
    with pytest.raises(AnnotationError, match=r"c d.jpg: error: 24x24 = 576 pixels exceeds the image size limit of "
                                              r"500 pixels \(max_image_pixels\); refused before decoding"):
        build_source("wsol_metadata", split="test", root=root, num_classes=3,
                     **yaml_data_options("wsol_metadata", max_image_pixels=500))
    (root / "metadata" / "image_sizes.txt").write_text(sizes)
    with pytest.raises(ValueError, match="max_image_pixels must be a positive integer, got 0"):
        build_source("wsol_metadata", split="test", root=root, num_classes=3,
                     **yaml_data_options("wsol_metadata", max_image_pixels=0))
    _huge_jpeg_header(10000, 10000)(root / "images" / "val" / "b.jpg")
    (root / "metadata" / "image_sizes.txt").write_text("val/a.jpg,20,16\nval/b.jpg,10000,10000\nval/c d.jpg,24,24\n")
    source = build_source("wsol_metadata", split="test", root=root, num_classes=3,
                          **yaml_data_options("wsol_metadata", max_image_pixels=100_000_000))
    assert source.annotations.records[1].size == (10000, 10000)  # header check only: the pixels are never decoded


# ------------------------------------------------------------------------------------------------ score maps
def _map(image_id: str, write: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / "maps" / f"{image_id}.npy"
        if path.is_file():
            path.unlink()
        write(path)
    return mutate


def _npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.save(p, array)


def _npy_bytes(transform: Callable[[bytes], bytes], array: np.ndarray | None = None) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((224, 224), dtype=np.float32) if array is None else array)
        path.write_bytes(transform(buffer.getvalue()))
    return write


def _huge_header(path: Path) -> None:
    """A .npy header claiming a 100000x100000 float64 array (80 GB) followed by 16 bytes."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (100000, 100000)})
        handle.write(b"\0" * 16)


def _pickled(path: Path) -> None:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


def _npz(path: Path) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, x=np.zeros((224, 224)))


SMALL = np.zeros((4, 5))
SCOREMAPS: dict[str, Case] = {
    "missing": Case(_map("val/b.jpg", lambda p: None), fragments=("b.jpg.npy", "score map not found")),
    "zero-byte": Case(_map("val/b.jpg", lambda p: p.write_bytes(b"")), fragments=("b.jpg.npy", "empty score map")),
    "truncated": Case(_map("val/b.jpg", _npy_bytes(lambda b: b[:-1000])), fragments=("b.jpg.npy", "truncated")),
    "header-only": Case(_map("val/b.jpg", _npy_bytes(lambda b: b[:128])), fragments=("b.jpg.npy", "truncated")),
    "half-header": Case(_map("val/b.jpg", _npy_bytes(lambda b: b[:40])), fragments=("b.jpg.npy", "not a .npy")),
    "not-npy": Case(_map("val/b.jpg", lambda p: p.write_text("0.5\n" * 100)), fragments=("b.jpg.npy", "not a .npy")),
    "npz-named-npy": Case(_map("val/b.jpg", _npz), fragments=("b.jpg.npy", "not a .npy")),
    "pickled-object": Case(_map("val/b.jpg", _pickled), fragments=("b.jpg.npy", "dtype object")),
    "integer-map": Case(_map("val/b.jpg", _npy(np.zeros((224, 224), dtype=np.int64))),
                        fragments=("b.jpg.npy", "dtype int64")),
    "bool-map": Case(_map("val/b.jpg", _npy(np.zeros((224, 224), dtype=bool))), fragments=("b.jpg.npy", "dtype bool")),
    "wrong-shape-4x5": Case(_map("val/b.jpg", _npy(SMALL)),
                            fragments=("b.jpg.npy", "shape (4, 5)", "wsolevaluation scores 224x224 maps")),
    "wrong-shape-image-size": Case(_map("val/b.jpg", _npy(np.zeros((20, 16)))), fragments=("b.jpg.npy", "(20, 16)")),
    "transposed-grid-3d": Case(_map("val/b.jpg", _npy(np.zeros((1, 224, 224)))), fragments=("b.jpg.npy", "(1, 224, 224)")),
    "huge-header-shape": Case(_map("val/b.jpg", _huge_header), fragments=("b.jpg.npy", "(100000, 100000)")),
    "nan": Case(_map("val/b.jpg", _npy(np.full((224, 224), np.nan))), fragments=("b.jpg.npy", "NaN")),
    "inf": Case(_map("val/b.jpg", _npy(np.full((224, 224), np.inf))), fragments=("b.jpg.npy", "outside [0, 1]")),
    "above-one": Case(_map("val/b.jpg", _npy(np.full((224, 224), 1.5))), fragments=("b.jpg.npy", "[1.5, 1.5]")),
    "negative": Case(_map("val/b.jpg", _npy(np.full((224, 224), -0.1))), fragments=("b.jpg.npy", "outside [0, 1]")),
    "directory": Case(_map("val/b.jpg", lambda p: p.mkdir()), fragments=("b.jpg.npy", "not a regular file")),
    "padded": Case(_map("val/b.jpg", _npy_bytes(lambda b: b + b"\0" * 8)), fragments=("b.jpg.npy", "bytes")),
    "unreadable": Case(_map("val/b.jpg", lambda p: (np.save(p, np.zeros((224, 224))), p.chmod(0))),
                       fragments=("b.jpg.npy", "cannot be read"), marks=(needs_non_root,)),
    "ok-float16": Case(_map("val/a.jpg", lambda p: None), outcome="ok"),  # replaced below with the GT map in float16
    "ok-fortran-order": Case(_map("val/a.jpg", lambda p: None), outcome="ok"),
    "ok-extra-maps-ignored": Case(_map("val/zzz.jpg", _npy(np.zeros((3, 3)))), outcome="ok"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks, id=n) for n, c in SCOREMAPS.items()])
def test_scoremaps(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    case = SCOREMAPS[name]
    root = _baseline(tmp_path)
    good = np.load(root / "maps" / "val" / "a.jpg.npy")
    case.mutate(root)
    if name == "ok-float16":
        np.save(root / "maps" / "val" / "a.jpg.npy", good.astype(np.float16))
    if name == "ok-fortran-order":
        np.save(root / "maps" / "val" / "a.jpg.npy", np.asfortranarray(good.astype(np.float64)))
    code, out, err = _score(root, "scoremaps", capsys)
    if case.outcome == "ok":
        assert code == 0, err
        assert json.loads(out)["maxboxacc"] == 100.0
        return
    assert code == 2 and not out, err
    assert all(fragment in err for fragment in case.fragments), err


# ------------------------------------------------------------------------------------------------ predictions
def _pred(transform: Callable[[str], str]) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / "pred.txt"
        path.write_text(transform(path.read_text()))
    return mutate


PREDICTIONS: dict[str, Case] = {
    "too-few-lines": Case(_pred(lambda s: s.split("\n", 1)[1]), fragments=("pred.txt: 2 lines", "lists 3 images")),
    "extra-blank-line": Case(_pred(lambda s: s + "\n"), fragments=("pred.txt: 4 lines",)),
    "incomplete-group": Case(_pred(lambda s: s.replace("1 0 0 15 19", "1 0 0 15")),
                             fragments=("pred.txt:2", "4 numbers")),
    "nan-coordinate": Case(_pred(lambda s: s.replace("1 0 0 15 19", "1 0 0 nan 19")),
                           fragments=("pred.txt:2", "malformed group 1")),
    "label-1e3": Case(_pred(lambda s: s.replace("1 0 0 15 19", "1e3 0 0 15 19")),
                      fragments=("pred.txt:2", "malformed group 1")),
    "label-out-of-range": Case(_pred(lambda s: s.replace("1 0 0 15 19", "3 0 0 15 19")),
                               fragments=("pred.txt:2", "group 1: predicted label 3 outside [0, 2]")),
    "label-huge": Case(_pred(lambda s: s.replace("1 0 0 15 19", "99999999999999999999 0 0 15 19")),
                       fragments=("pred.txt:2", "label 99999999999999999999 outside")),
    "inverted-box": Case(_pred(lambda s: s.replace("1 0 0 15 19", "1 15 0 0 19")),
                         fragments=("pred.txt:2", "inverted box")),
    "latin1": Case(lambda root: (root / "pred.txt").write_bytes(b"0 2 3 10 12\n1 0 0 15 19 \xe9\n2 4 4 19 19\n"),
                   fragments=("pred.txt:2: error: not UTF-8 text: byte 0xe9",)),
    "directory": Case(lambda root: ((root / "pred.txt").unlink(), (root / "pred.txt").mkdir()),
                      fragments=("pred.txt", "is a directory")),
    "missing": Case(lambda root: (root / "pred.txt").unlink(), fragments=("pred.txt: file not found",)),
    "ok-crlf-commas-bom": Case(_pred(lambda s: "\ufeff" + s.replace("\n", "\r\n").replace(" ", ",")), outcome="ok"),
    "ok-sixth-group-ignored": Case(  # the devkit reads five guesses; a sixth is not read, so not checked
        _pred(lambda s: s.replace("1 0 0 15 19", "1 0 0 15 19" + " 2 0 0 1 1" * 4 + " 7 x x x x")), outcome="ok"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=c.marks, id=n) for n, c in PREDICTIONS.items()])
def test_devkit_predictions(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    case = PREDICTIONS[name]
    root = _baseline(tmp_path)
    case.mutate(root)
    code, out, err = _score(root, "devkit", capsys)
    if case.outcome == "ok":
        assert code == 0, err
        assert json.loads(out)["top1_loc_err"] == 0.0
        return
    assert code == 2 and not out, err
    assert all(fragment in err for fragment in case.fragments), err


# ------------------------------------------------------------------------------------------------ other readers
def _xml_with_filename(tmp_path: Path, filename: str) -> Path:
    folder = tmp_path / "xml"
    folder.mkdir()
    (folder / "ILSVRC2012_val_00000001.xml").write_text(
        f"<annotation><folder>val</folder><filename>{filename}</filename><size><width>20</width><height>16</height>"
        "</size><object><name>n01440764</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>")
    return folder


def _devkit_xml(tmp_path: Path, filename: str) -> None:
    from wsol.data.formats import read_devkit_xml

    read_devkit_xml(_xml_with_filename(tmp_path, filename), ["n01440764"], on_error="skip", **ILSVRC_READ)


def _kaggle(tmp_path: Path, content: bytes, on_error: str = "skip") -> None:
    from wsol.data.formats import read_kaggle_csv

    path = tmp_path / "LOC_val_solution.csv"
    path.write_bytes(content)
    read_kaggle_csv(path, ["n01440764"], on_error=on_error, **ILSVRC_READ)


def _cub(tmp_path: Path, image_path: str, encoding: str = "utf-8") -> None:
    from wsol.data.formats import read_cub

    (tmp_path / "images.txt").write_bytes(f"1 {image_path}\n".encode(encoding))
    (tmp_path / "image_class_labels.txt").write_text("1 1\n")
    (tmp_path / "train_test_split.txt").write_text("1 0\n")
    (tmp_path / "bounding_boxes.txt").write_text("1 1.0 1.0 4.0 4.0\n")
    read_cub(tmp_path, "test", on_error="skip", **CUB_READ)


def _masks(tmp_path: Path, mask: str) -> None:
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("test/a.jpg\n")
    (meta / "class_labels.txt").write_text("test/a.jpg,0\n")
    (meta / "localization.txt").write_text(f"test/a.jpg,{mask},test/ignore.png\n")
    read_metadata(meta, on_error="skip", **METADATA_READ)


def _write(tmp_path: Path, image_id: str) -> None:
    write_metadata(Annotations([ImageRecord(image_id, 0)], num_classes=1), tmp_path / "out")


def _export(tmp_path: Path, image_id: str) -> None:
    from wsol.evaluation.store import _scoremap_path

    _scoremap_path(tmp_path, image_id)


def _synsets(tmp_path: Path, content: bytes) -> None:
    from wsol.data.formats import read_synsets

    path = tmp_path / "LOC_synset_mapping.txt"
    path.write_bytes(content)
    read_synsets(path)


def _blacklist(tmp_path: Path, content: bytes) -> None:
    from wsol.data.formats import read_blacklist

    path = tmp_path / "blacklist.txt"
    path.write_bytes(content)
    read_blacklist(path)


def _devkit_mat(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    import scipy.io

    from wsol.data.formats import read_devkit_mat

    path = tmp_path / "cache_groundtruth.mat"
    objects = np.zeros((1,), dtype=[("label", "O"), ("bbox", "O")])
    objects[0] = (1, np.array([1.0, 1.0, 5.0, 5.0]))
    scipy.io.savemat(path, {"rec": np.array([(objects,)], dtype=[("objects", "O")])})
    path.write_bytes(damage(path.read_bytes()))
    read_devkit_mat(path, {1: 0}, num_classes=1, **ILSVRC_READ)


def _xml_text(tmp_path: Path, text: bytes) -> None:
    from wsol.data.formats import read_devkit_xml

    folder = tmp_path / "xml"
    folder.mkdir()
    (folder / "ILSVRC2012_val_00000001.xml").write_bytes(text)
    read_devkit_xml(folder, ["n01440764"], on_error="skip", **ILSVRC_READ)


def _train_folder_with_loop(tmp_path: Path) -> None:
    from wsol.data.formats import read_train_folder

    folder = tmp_path / "train" / "n01440764"
    folder.mkdir(parents=True)
    (folder / "n01440764_1.JPEG").write_bytes(_jpeg((8, 8)))
    (folder / "again").symlink_to(folder, target_is_directory=True)  # a loop: every image read forever
    read_train_folder(tmp_path / "train")


def _metadata_dir_braces(tmp_path: Path) -> None:
    root = _baseline(tmp_path)
    build_source("wsol_metadata", split="test", root=root, num_classes=3,
                 **yaml_data_options("wsol_metadata", metadata_dir="metadata/{splt}"))


def _factory(tmp_path: Path, **options: object) -> None:
    build_source("wsol_metadata", split="test", root=_baseline(tmp_path), num_classes=3,
                 **yaml_data_options("wsol_metadata", **options))


OTHER_READERS: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "train-folder-symlink-loop": (_train_folder_with_loop, ("n01440764/again is the folder", "read twice")),
    "metadata-dir-braces": (_metadata_dir_braces, ("metadata_dir 'metadata/{splt}'", "only {split} is replaced")),
    "box-tolerance-nan": (lambda t: _factory(t, box_tolerance=float("nan")), ("box_tolerance must be a finite",)),
    "box-tolerance-negative": (lambda t: _factory(t, box_tolerance=-1.0), ("box_tolerance must be a finite",)),
    "max-image-pixels-float": (lambda t: _factory(t, max_image_pixels=1e8), ("max_image_pixels must be a positive",)),
    "xml-id-template-unknown-field": (
        lambda t: __import__("wsol.data.formats", fromlist=["x"]).read_devkit_xml(
            _xml_with_filename(t, "a"), ["n01440764"], id_template="val/{name}.JPEG", **ILSVRC_READ),
        ("id template 'val/{name}.JPEG' cannot be filled", "{filename}, {folder}")),
    "kaggle-field-over-csv-limit": (lambda t: _kaggle(t, b"ImageId,PredictionString\nx,\"" + b"1" * 200_000 + b"\"\n"),
                                    ("LOC_val_solution.csv:2: not a readable CSV line", "field larger than field limit")),
    "devkit-mat-zero-byte": (lambda t: _devkit_mat(t, lambda b: b""),
                             ("cache_groundtruth.mat: not a readable MATLAB .mat file",)),
    "devkit-mat-truncated": (lambda t: _devkit_mat(t, lambda b: b[: len(b) // 2]),
                             ("cache_groundtruth.mat: not a readable MATLAB .mat file",)),
    "devkit-mat-negative-box": (lambda t: _devkit_mat(t, lambda b: b.replace(np.array([1.0]).tobytes(),
                                                                              np.array([-9.0]).tobytes(), 1)),
                                ("cache_groundtruth.mat:1", "rec(1).objects(1)", "negative coordinate")),
    "devkit-xml-not-xml": (lambda t: _xml_text(t, b"\xff\xfe<annotation"), ("ILSVRC2012_val_00000001.xml", "not valid XML")),
    "kaggle-wrong-header": (lambda t: _kaggle(t, b"id,boxes\nx,n01440764 1 1 5 5\n"),
                            ("LOC_val_solution.csv:1", "expected the header 'ImageId,PredictionString'")),
    "xml-filename-dotdot": (lambda t: _devkit_xml(t, "../../../etc/passwd"),
                            ("ILSVRC2012_val_00000001.xml", "'val/../../../etc/passwd.JPEG'", "climbs out")),
    "xml-filename-absolute-template": (lambda t: _devkit_xml(t, "/x"), ("ILSVRC2012_val_00000001.xml", "'val//x.JPEG'")),
    "kaggle-imageid-dotdot": (lambda t: _kaggle(t, b"ImageId,PredictionString\n../x,n01440764 1 1 5 5\n"),
                              ("LOC_val_solution.csv:2", "'val/../x.JPEG'", "climbs out")),
    "kaggle-latin1": (lambda t: _kaggle(t, b"ImageId,PredictionString\nILSVRC2012_val_\xe9,n01440764 1 1 5 5\n"),
                      ("LOC_val_solution.csv:2", "not UTF-8 text: byte 0xe9")),
    "kaggle-nan-box": (lambda t: _kaggle(t, b"ImageId,PredictionString\nILSVRC2012_val_1,n01440764 1 1 nan 5\n", "raise"),
                       ("LOC_val_solution.csv:2", "non-numeric or non-finite")),
    "cub-image-path-absolute": (lambda t: _cub(t, "/etc/passwd"), ("images.txt:1", "'/etc/passwd'", "absolute")),
    "cub-latin1": (lambda t: _cub(t, "001.Bird/caf\u00e9.jpg", "latin-1"), ("images.txt:1", "not UTF-8")),
    "mask-path-dotdot": (lambda t: _masks(t, "../../secret.png"),
                         ("localization.txt:1", "mask path '../../secret.png'", "climbs out")),
    "write-metadata-absolute-id": (lambda t: _write(t, "/abs.jpg"), ("image id '/abs.jpg'", "absolute")),
    "scoremap-export-dotdot": (lambda t: _export(t, "../a.jpg"), ("image id '../a.jpg'", "not a relative path")),
    "synsets-latin1": (lambda t: _synsets(t, b"n01440764 tench\nn01443537 poisson caf\xe9\n"),
                       ("LOC_synset_mapping.txt:2", "not UTF-8")),
    "devkit-blacklist-1e3": (lambda t: _blacklist(t, b"12\n1e3\n"), ("blacklist.txt:2", "'1e3'")),
    "devkit-blacklist-utf16": (lambda t: _blacklist(t, "12\n".encode("utf-16")), ("blacklist.txt:1", "not UTF-8")),
}


@pytest.mark.parametrize("name", list(OTHER_READERS))
def test_other_readers_and_writers(name: str, tmp_path: Path) -> None:
    """Every other reader/writer: ids confined to their root, text named by file and line."""
    run, fragments = OTHER_READERS[name]
    with pytest.raises(ValueError) as raised:
        run(tmp_path)
    assert all(fragment in str(raised.value) for fragment in fragments), str(raised.value)


def test_skipped_image_pickles_across_workers() -> None:
    import pickle

    item = SkippedImage(3, "val/b.jpg", "val/b.jpg: truncated image data")
    assert pickle.loads(pickle.dumps(item)) == item


# ------------------------------------------------------------------------------------------------ the id rule
SAFE_JOIN = {
    "plain": ("val/ILSVRC2012_val_00000001.JPEG", None),
    "spaces": ("001.Black footed/a b.jpg", None),
    "dots-in-names": ("a/..b/c..", None),
    "three-dots": ("...", None),
    "tilde-is-a-name": ("~/a.jpg", None),
    "dotdot": ("../a.jpg", "climbs out of its root"),
    "dotdot-inside": ("a/../../b.jpg", "climbs out of its root"),
    "absolute": ("/etc/passwd", "is an absolute path"),
    "backslash-dotdot": ("..\\a.jpg", "backslash"),
    "drive": ("c:a.jpg", "drive letter"),
    "dot": ("./a.jpg", "'.' component"),
    "double-slash": ("a//b.jpg", "empty path component"),
    "trailing-slash": ("a/", "empty path component"),
    "empty": ("", "is empty"),
    "nul": ("a\x00.jpg", "control character"),
    "newline": ("a\n.jpg", "control character"),
}


@pytest.mark.parametrize("name", list(SAFE_JOIN))
def test_safe_join(name: str, tmp_path: Path) -> None:
    """``wsol.io.safe_join``: lexical, before the disk is touched (nothing here exists)."""
    from wsol.io import UnsafePathError, safe_join

    image_id, reason = SAFE_JOIN[name]
    if reason is None:
        assert safe_join(tmp_path, image_id) == tmp_path.joinpath(*image_id.split("/"))
        return
    with pytest.raises(UnsafePathError) as raised:
        safe_join(tmp_path, image_id, where="ids.txt:7")
    assert str(raised.value).startswith(f"ids.txt:7: image id {image_id!r} is not a relative path inside {tmp_path}")
    assert reason in str(raised.value)


def test_symlinks_inside_the_tree_are_followed(tmp_path: Path) -> None:
    """The README's promise: a dataset tree whose folders (or files) link to shared storage keeps working."""
    root = _baseline(tmp_path)
    storage = tmp_path / "nfs"
    storage.mkdir()
    image = root / "images" / "val" / "a.jpg"
    image.rename(storage / "a.jpg")
    image.symlink_to(storage / "a.jpg")
    _link_folder_outside(root)  # and the whole val/ folder
    source = _evaluate(root)
    assert [load_or_skip(source, i).size for i in range(3)] == [(20, 16), (16, 20), (24, 24)]


@pytest.mark.parametrize(("argv", "fragment"), [
    (["score", "devkit", "--num-classes", "0"], "--num-classes: must be a positive integer, got 0"),
    (["score", "scoremaps", "--box-tolerance", "nan"], "--box-tolerance: box_tolerance must be a finite number"),
    (["score", "scoremaps", "--max-image-pixels", "-1"], "--max-image-pixels: must be a positive integer"),
    (["prepare", "check", "--num-classes", "-3"], "--num-classes: must be a positive integer, got -3"),
    (["prepare", "check", "--box-tolerance", "inf"], "--box-tolerance: box_tolerance must be a finite number"),
], ids=["score-num-classes-0", "score-box-tolerance-nan", "score-max-pixels-negative", "check-num-classes-negative",
        "check-box-tolerance-inf"])
def test_cli_options_out_of_range(argv: list[str], fragment: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from wsol.prepare import main as prepare
    from wsol.score import main as score

    root = _baseline(tmp_path)
    tool, command, *options = argv
    extra = {"devkit": ["--pred", str(root / "pred.txt"), "--gt", str(root)],
             "scoremaps": ["--scoremap-root", str(root / "maps"), "--gt", str(root)],
             "check": ["--root", str(root)]}[command]
    with pytest.raises(SystemExit) as raised:
        (score if tool == "score" else prepare)([command, *extra, *options])
    assert raised.value.code == 2 and fragment in capsys.readouterr().err


# ----------------------------------------------------------------------------- Imagenette: copies and leaks
def test_imagenette_refuses_a_val_image_twice_and_a_training_copy_of_a_test_image(tmp_path: Path) -> None:
    import shutil

    from test_imagenette import TENCH, _metadata_gt, _tree

    gt = _metadata_gt(tmp_path / "gt")
    # a val image copied a second time into another (nested) folder: it would be scored twice
    root = _tree(tmp_path / "a")
    nested = root / "val" / TENCH / "more"
    nested.mkdir()
    shutil.copy(root / "train" / TENCH / "ILSVRC2012_val_00000001.JPEG", nested / "ILSVRC2012_val_00000001.JPEG")
    for split in ("test", "train"):
        with pytest.raises(ValueError, match=r"1 image name\(s\) occur more than once.*ILSVRC2012_val_00000001: "
                                             r"train/n01440764/ILSVRC2012_val_00000001.JPEG, "
                                             r"val/n01440764/more/ILSVRC2012_val_00000001.JPEG"):
            build_source("imagenette", split=split, root=root, **yaml_data_options("imagenette", gt=gt))
    # a byte-identical copy of a test image under a train-style name: caught by content, not by name
    root = _tree(tmp_path / "b")
    shutil.copy(root / "val" / TENCH / "ILSVRC2012_val_00000002.JPEG", root / "train" / TENCH / "n01440764_99.JPEG")
    for split in ("train", "val"):
        try:
            build_source("imagenette", split=split, root=root, **yaml_data_options("imagenette", val_fraction=0.5))
        except ValueError as err:
            assert ("would train on copies of test images" in str(err)
                    and "train/n01440764/n01440764_99.JPEG = val/n01440764/ILSVRC2012_val_00000002.JPEG" in str(err))
            break
    else:
        pytest.fail("the copy was in neither training split")
    test = build_source("imagenette", split="test", root=root, **yaml_data_options("imagenette", gt=gt))
    assert len(test.annotations) == 4  # scoring is unaffected


# ----------------------------------------------------------------------------- the head recipe's feature cache
def _features(root: Path, cache: Path, on_error: str = "raise", check_files: str = "header",  # noqa: ANN202
              chunk_size: int = 2048):
    import torch

    from wsol.engine.features import cached_pooled_features
    from wsol.models import build_model

    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=NUM_CLASSES, width=4)
    source = build_source("wsol_metadata", split="test", root=root, num_classes=NUM_CLASSES, on_error=on_error,
                          **yaml_data_options("wsol_metadata", check_files=check_files))
    return cached_pooled_features(model, source, arch="small_cnn", cache_dir=cache, image_size=16, hflip=False,
                                  batch_size=2, num_workers=0, device=torch.device("cpu"), data_root=str(root),
                                  chunk_size=chunk_size)


def test_feature_cache_goes_by_content_not_by_file_names(tmp_path: Path) -> None:
    import torch

    root = _baseline(tmp_path / "ds")
    first = _features(root, tmp_path / "cache")
    assert first.meta["cache_hit"] is False and _features(root, tmp_path / "cache").meta["cache_hit"] is True
    # the training images replaced under the same names (and sizes): new features, not the stale ones
    (root / "images" / "val/a.jpg").write_bytes(_jpeg((20, 16), quality=20))
    again = _features(root, tmp_path / "cache")
    assert again.meta["cache_hit"] is False and not torch.equal(again.pooled[:, 0], first.pooled[:, 0])
    assert torch.equal(again.pooled[:, 1:], first.pooled[:, 1:])
    assert len(list((tmp_path / "cache").glob("features-*.pt"))) == 2


def test_feature_cache_made_under_skip_is_refused_under_raise(tmp_path: Path) -> None:
    root = _baseline(tmp_path / "ds")
    path = root / "images" / "val/b.jpg"
    path.write_bytes(path.read_bytes()[:-2])  # no JPEG end marker: fails to load
    # without the split's file checks (which would drop it up front) the image fails in the feature pass
    skipped = _features(root, tmp_path / "cache", "skip", check_files="none")
    assert list(skipped.skipped) == ["val/b.jpg"]
    with pytest.raises(ImageLoadError, match=r"made under data.on_error=skip, it lacks 1 training image\(s\) that "
                                             r"failed to load, e.g. .*val/b.jpg"):
        _features(root, tmp_path / "cache", "raise", check_files="none")


def test_an_unwritable_cache_dir_is_an_error_before_the_feature_pass(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import wsol.engine.features as features

    root = _baseline(tmp_path / "ds")
    (tmp_path / "not_a_dir").write_text("")  # a file where the cache folder should be (fails as root too)
    monkeypatch.setattr(features, "extract_pooled_features", lambda *a, **k: pytest.fail("the pass started"))
    with pytest.raises(OSError, match=r"the feature cache \(paths.cache_dir, WSOL_CACHE\): cannot write in "
                                      r".*not_a_dir/sub"):
        _features(root, tmp_path / "not_a_dir" / "sub")


def test_a_batch_larger_than_the_training_split_is_refused_before_the_feature_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import torch

    import wsol.engine.features as features
    from wsol.engine.checkpoint import model_spec
    from wsol.engine.recipes import TrainSettings, train_model
    from wsol.models import build_model

    monkeypatch.setattr(features, "extract_pooled_features", lambda *a, **k: pytest.fail("the pass started"))
    settings = TrainSettings(
        recipe="head", epochs=1, max_iters=None, batch_size=64, accumulate_grad_batches=1,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1), lr=0.1, weight_decay=0.0, new_layer_lr_mult=1.0,
        bias_lr_mult=1.0, schedule="constant", schedule_unit="iter", milestones=(), gamma=0.1, warmup_iters=0,
        amp=False, channels_last=False, sync_bn=False, num_workers=0, checkpoint_every=10, snapshot_every=None,
        log_every=1, feature_cache=True, svm_C=1.0, svm_max_iter=10)
    source = build_source("wsol_metadata", split="test", root=_baseline(tmp_path / "ds"), num_classes=NUM_CLASSES,
                          **yaml_data_options("wsol_metadata"))
    with pytest.raises(ValueError, match="the training set has 3 images, fewer than one batch of 64"):
        train_model(build_model("small_cnn", num_classes=NUM_CLASSES, width=4), source, tmp_path / "run",
                    settings=settings, seed=0, spec=model_spec("small_cnn", NUM_CLASSES, "gap", {"width": 4}),
                    fingerprint={}, device=torch.device("cpu"), make_train_dataset=None, image_size=16,
                    cache_dir=str(tmp_path / "cache"), data_root=None, arch="small_cnn")


def _full_disk_at(module: object, monkeypatch: pytest.MonkeyPatch, fails: Callable[[Path], bool]) -> None:
    """``module.atomic_torch_save`` raises ENOSPC (as a full disk) for the files ``fails`` picks."""
    import errno

    real = module.atomic_torch_save  # type: ignore[attr-defined]

    def save(obj: object, path: Path) -> None:
        if fails(Path(path)):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(obj, path)

    monkeypatch.setattr(module, "atomic_torch_save", save)


def test_a_full_disk_during_the_feature_pass_keeps_the_finished_chunks(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import wsol.engine.features as features

    root, cache = _baseline(tmp_path / "ds"), tmp_path / "cache"
    reference = _features(root, tmp_path / "ref", chunk_size=1)
    # the 2nd chunk's part cannot be written: the 1st is kept, and the message says so
    _full_disk_at(features, monkeypatch, lambda p: p.name.endswith(".part00001.pt"))
    with pytest.raises(OSError) as raised:
        _features(root, cache, chunk_size=1)
    assert raised.value.filename.endswith(".part00001.pt") and raised.value.strerror == "No space left on device"
    assert raised.value.__notes__ == [f"1 of 3 feature chunks are kept in {cache}; the next run with the same inputs "
                                      "continues from them"]
    assert len(list(cache.glob("*.part*.pt"))) == 1
    # every part written, the joined file cannot be: the parts are kept
    monkeypatch.undo()
    _full_disk_at(features, monkeypatch, lambda p: ".part" not in p.name)
    with pytest.raises(OSError) as raised:
        _features(root, cache, chunk_size=1)
    assert raised.value.__notes__ == [f"all 3 feature chunks are kept in {cache}; the next run with the same inputs "
                                      "joins them without computing them again"]
    assert len(list(cache.glob("*.part*.pt"))) == 3 and not list(cache.glob("features-*px-????????????????????.pt"))
    # space again: the parts are joined, nothing is computed again
    monkeypatch.undo()
    monkeypatch.setattr(features, "extract_pooled_features", lambda *a, **k: pytest.fail("computed again"))
    import torch

    assert torch.equal(_features(root, cache, chunk_size=1).pooled, reference.pooled)


# ----------------------------------------------------------------------------- how the tools end: one line
def _training_interrupted() -> BaseException:
    from wsol.engine.trainer import TrainingInterrupted
    from wsol.io import add_note

    return add_note(TrainingInterrupted(7, 6, Path("/r/checkpoints/last.pt")), "resume with: wsol-run train.resume=/r")


def _with_notes(err: BaseException, *notes: str) -> BaseException:
    from wsol.io import add_note

    for note in notes:
        add_note(err, note)
    return err


GUARD: dict[str, tuple[Callable[[], BaseException], int, str]] = {
    "os-error-names-the-file": (lambda: PermissionError(13, "Permission denied", "/r/metrics.json"), 2,
                                "error: /r/metrics.json: Permission denied"),
    "disk-full-says-what-is-kept": (
        lambda: _with_notes(OSError(28, "No space left on device", "/r/checkpoints/last.pt"),
                            "the previous checkpoint (step 4) is kept", "resume with: wsol-run train.resume=/r"), 2,
        "error: /r/checkpoints/last.pt: No space left on device; the previous checkpoint (step 4) is kept; resume "
        "with: wsol-run train.resume=/r"),
    "os-error-without-a-file": (lambda: OSError(28, "No space left on device"), 2, "error: No space left on device"),
    "ctrl-c-says-what-is-kept": (
        lambda: _with_notes(KeyboardInterrupt(), "1 of 3 feature chunks are kept in /c; the next run with the same "
                                                 "inputs continues from them"), 130,
        "interrupted; 1 of 3 feature chunks are kept in /c; the next run with the same inputs continues from them"),
    "ctrl-c-elsewhere": (KeyboardInterrupt, 130, "interrupted"),
    "ctrl-c-in-training": (_training_interrupted, 130, "interrupted at step 7; last checkpoint: step 6 "
                                                       "(/r/checkpoints/last.pt); resume with: wsol-run "
                                                       "train.resume=/r"),
}


@pytest.mark.parametrize("name", list(GUARD))
def test_the_tools_end_with_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``wsol.cli.cli_guard``: an OSError or a Ctrl-C is one line (the file, the reason, what is kept, how to go
    on), never a traceback."""
    from wsol.cli import cli_guard

    make, code, line = GUARD[name]

    def body() -> None:
        raise make()

    try:
        cli_guard(body)
    except SystemExit as end:
        exit_code = end.code
    except KeyboardInterrupt:  # would end the test session
        pytest.fail("a raw KeyboardInterrupt left the guard")
    err = capsys.readouterr().err
    assert exit_code == code and "Traceback" not in err
    assert err.strip().splitlines()[0] == line, err


# ----------------------------------------------------------------------------- run commands: hostile values
RUN_DATA = ["data.num_images={train:64,val:16,test:32}", "data.image_size=32", "data.resize_size=32",
            "data.crop_size=32", "data.render_size=32"]
RUN = [*RUN_DATA, "train.epochs=1", "train.batch_size=32", "+model.kwargs.width=4", "device=cpu",
       "eval.save_cams=true"]
#: The files of a finished run a refused command may not change.
KEPT = ("metrics.json", "model.pt", "predictions.csv", ".hydra/overrides.yaml", "cams/index.json")


def _wsol(module: str, *args: str, cwd: Path | None = None):  # noqa: ANN202
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", f"wsol.{module}", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("finished")
    proc = _wsol("run", f"hydra.run.dir={out}", *RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _unfinished_copy(run: Path, tmp: Path) -> Path:
    """The finished run as it was before its evaluation: a checkpoint, no metrics.json."""
    import shutil

    copy = tmp / "unfinished"
    shutil.copytree(run, copy)
    (copy / "metrics.json").unlink()
    return copy


COMMANDS: dict[str, tuple[str, Callable[[Path, Path], list[str]], tuple[str, ...]]] = {
    # a run name is one folder name: refused before Hydra creates anything (the cwd stays empty)
    "name-dotdot": ("run", lambda run, tmp: [*RUN, "name=../../escaped"],
                    ("name='../../escaped': a run name is one folder name", "climbs out of its root")),
    "name-absolute": ("run", lambda run, tmp: [*RUN, "name=/abs"], ("name='/abs'", "is an absolute path")),
    "name-two-components": ("train", lambda run, tmp: [*RUN[:-1], "name=a/b"],
                            ("name='a/b'", "several path components")),
    "name-in-a-sweep": ("run", lambda run, tmp: ["-m", *RUN, "name=ok,../x"], ("name='../x'", "climbs out")),
    # stored CAMs are scored as what they are, or not at all
    "rescore-another-split": ("evaluate", lambda run, tmp: [f"cams={run / 'cams'}", "eval.split=val"],
                              ("the store holds the test split ('test'); eval.split=val was asked: re-score it with "
                               "eval.split=test",)),
    "rescore-another-render-size": (
        "evaluate", lambda run, tmp: [f"cams={run / 'cams'}", *RUN_DATA[:-1], "data.render_size=64"],
        ("image 'test/000000.png' was 32x32 when its CAMs were stored but is 64x64 here",)),
    # a run dir's results are never replaced by another config's
    "rerun-finished-with-other-settings": (
        "run", lambda run, tmp: [f"hydra.run.dir={run}", *RUN, "seed=1", "eval.cam_threshold=0.3"],
        ("holds a finished run made with other settings (changed: eval.cam_threshold: 0.2 -> 0.3; seed: 0 -> 1); "
         "it is kept: choose another run name",)),
    "retrain-over-a-checkpoint": (
        "run", lambda run, tmp: [f"hydra.run.dir={_unfinished_copy(run, tmp)}", *RUN],
        ("holds the checkpoint of an earlier training", "continue it with train.resume=auto")),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_run_commands_refuse_hostile_values(name: str, finished_run: Path, tmp_path: Path) -> None:
    import hashlib

    module, make_args, fragments = COMMANDS[name]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = make_args(finished_run, tmp_path)
    if not any(a.startswith(("hydra.run.dir=", "name=")) for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'out'}")
    digest = {f: hashlib.sha256((finished_run / f).read_bytes()).hexdigest() for f in KEPT}
    proc = _wsol(module, *args, cwd=cwd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = next(x for x in proc.stderr.splitlines() if x.startswith("error: "))
    assert all(f in line for f in fragments), line
    assert not list(cwd.iterdir())  # nothing written where the command was started
    assert digest == {f: hashlib.sha256((finished_run / f).read_bytes()).hexdigest() for f in KEPT}
    assert not (tmp_path / "out" / "metrics.json").exists()
