"""load_rgb on every kind of bad or unusual image file, all generated here in tmp_path."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from wsol.conf import yaml_data_options
from wsol.data import images as images_module
from wsol.data.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    ImageLoadError,
    ImageSizeMismatchError,
    check_image,
    load_rgb,
    read_image_size,
)

_DATA = yaml_data_options("wsol_metadata")
#: The loader options a run passes (``data.apply_exif_orientation``, ``data.alpha``, ``data.max_image_pixels`` of
#: configs/data/*.yaml, their one home); a test overrides the one it is about.
OPTIONS = {"apply_exif_orientation": _DATA["apply_exif_orientation"], "alpha": _DATA["alpha"],
           "max_pixels": _DATA["max_image_pixels"]}


def _load(path: Path, **overrides: object) -> Image.Image:
    """``load_rgb`` with the config's options and ``overrides``."""
    return load_rgb(path, **{**OPTIONS, **overrides})  # type: ignore[arg-type]


def _check(path: Path, **overrides: object) -> tuple[int, int]:
    """``check_image`` with the config's options and ``overrides``."""
    return check_image(path, **{**OPTIONS, **overrides})  # type: ignore[arg-type]


def _size(path: Path, **overrides: object) -> tuple[int, int]:
    """``read_image_size`` with the config's options (it takes no ``alpha``) and ``overrides``."""
    options = {k: v for k, v in {**OPTIONS, **overrides}.items() if k != "alpha"}
    return read_image_size(path, **options)  # type: ignore[arg-type]


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """uint8 [H, W, 3] image whose pixels differ everywhere (so flips and rotations are visible)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 6 % 256, y * 8 % 256, (x + y) * 3 % 256], axis=-1).astype(np.uint8)


def _jpeg_bytes(array: np.ndarray, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=95, **save)
    return buffer.getvalue()


def test_plain_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(_gradient()))
    image = _load(path, expected_size=(40, 30))
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image).astype(int) - _gradient()).mean() < 3


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", r"empty file \(0 bytes\)"),
        ("noise.jpg", bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8)), "not a recognised image format"),
        ("text.png", b"this is not an image at all", "not a recognised image format"),
    ],
)
def test_unreadable_files_name_file_and_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as caught:
        _load(path)
    assert caught.value.path == str(path) and str(path) in str(caught.value)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="file not found"):
        _load(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        _load(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_jpeg_raises_even_if_pillow_was_told_to_pad(tmp_path: Path, keep: float) -> None:
    data = _jpeg_bytes(_gradient(64, 48))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * keep)])
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # someone else's global setting must not make us pad silently
    try:
        with pytest.raises(ImageLoadError, match="truncated") as caught:
            _load(path)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # and we restore it
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous
    assert str(path) in str(caught.value)
    # The header is intact: a header-only read still works (used by the fast file check).
    assert _size(path) == (64, 48)


def test_cmyk_jpeg_converted(tmp_path: Path) -> None:
    rgb = _gradient()
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(path, "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    image = _load(path)
    assert image.mode == "RGB"
    # Pillow's naive CMYK round trip is lossless apart from JPEG error.
    assert np.abs(np.asarray(image).astype(int) - rgb).mean() < 10


def test_grayscale_and_palette_and_1bit(tmp_path: Path) -> None:
    gray = _gradient()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = _load(tmp_path / "g.png")
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), np.repeat(gray[..., None], 3, axis=2))
    Image.fromarray(_gradient()).convert("P").save(tmp_path / "p.png")
    assert _load(tmp_path / "p.png").mode == "RGB"
    Image.fromarray(gray > 100).save(tmp_path / "b.png")
    assert set(np.unique(np.asarray(_load(tmp_path / "b.png")))) == {0, 255}


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bit
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    image = _load(path)
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 1, 128, 255])
    # Pillow's own convert would saturate: everything above 255 becomes white.
    assert np.asarray(Image.open(path).convert("RGB"))[0, 1, 0] == 255


def test_rgba_composited_on_white_or_dropped(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red under everything
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # fully transparent
    rgba[1, :, 3] = 128  # half
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    white = np.asarray(_load(path))
    assert white[0, 0].tolist() == [200, 0, 0]
    assert white[0, 1].tolist() == [255, 255, 255]
    assert white[1, 0].tolist() == [227, 127, 127]  # 200*128/255 + 255*127/255 = 227.4; 255*127/255
    dropped = np.asarray(_load(path, alpha="drop"))
    assert dropped[0, 1].tolist() == [200, 0, 0]
    # LA (gray + alpha) goes the same way.
    la = Image.fromarray(np.stack([np.full((2, 2), 10, np.uint8), np.zeros((2, 2), np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    assert np.asarray(_load(tmp_path / "la.png"))[0, 0].tolist() == [255, 255, 255]


def _exif_rotated(tmp_path: Path, orientation: int) -> Path:
    image = Image.fromarray(_gradient(40, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.jpg"
    image.save(path, "JPEG", quality=95, exif=exif)
    return path


def test_exif_orientation_ignored_by_default_applied_on_request(tmp_path: Path) -> None:
    path = _exif_rotated(tmp_path, 6)  # "rotate 90 CW to display"
    stored = _load(path)
    assert stored.size == (40, 30)  # the stored pixel array, which ILSVRC/CUB boxes refer to
    assert np.abs(np.asarray(stored).astype(int) - _gradient(40, 30)).mean() < 3
    shown = _load(path, apply_exif_orientation=True)
    assert shown.size == (30, 40)
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))
    assert _size(path) == (40, 30) and _size(path, apply_exif_orientation=True) == (30, 40)
    # Metadata written for the stored array + EXIF applied: a clear size error naming the EXIF tag.
    with pytest.raises(ImageSizeMismatchError, match="EXIF orientation 6"):
        _load(path, expected_size=(40, 30), apply_exif_orientation=True)


def test_size_mismatch_names_file(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(_gradient()))
    with pytest.raises(ImageSizeMismatchError, match=r"decoded size 40x30 differs from the metadata size 30x40") as caught:
        _load(path, expected_size=(30, 40))
    assert str(path) in str(caught.value)


def test_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(ImageSizeMismatchError("/x.jpg", "bad size")))
    assert isinstance(error, ImageSizeMismatchError) and error.path == "/x.jpg" and error.reason == "bad size"


def test_float_image_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.tif"
    Image.fromarray(np.ones((3, 3), dtype=np.float32)).save(path)
    with pytest.raises(ImageLoadError, match="mode F"):
        _load(path)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_header_check_proves_completeness_without_decoding(fmt: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A complete JPEG/PNG is accepted from its header and end marker alone (load_rgb is never called); the
    same file cut short is not, and the decode that follows names the truncation. (A PNG missing only its IEND
    chunk and checksums decodes to the right pixels, so the PNG is cut into its pixel data.)"""
    noise = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    data = _jpeg_bytes(_gradient()) if fmt == "jpeg" else _png_bytes(noise)
    cut = 1 if fmt == "jpeg" else 200
    path = tmp_path / f"a.{fmt}"
    path.write_bytes(data)
    decoded: list[Path] = []
    real_load = images_module.load_rgb
    monkeypatch.setattr(images_module, "load_rgb", lambda p, **kw: decoded.append(p) or real_load(p, **kw))
    assert _check(path, expected_size=(40, 30)) == (40, 30) and decoded == []
    path.write_bytes(data[:-cut])
    with pytest.raises(ImageLoadError, match="truncated"):
        _check(path)
    assert decoded == [path]
    with pytest.raises(ImageSizeMismatchError, match=r"size 40x30 differs from the metadata size 30x40"):
        _check(path, expected_size=(30, 40))  # the header's size is checked first


def test_header_check_decodes_files_it_cannot_prove_complete(tmp_path: Path) -> None:
    """Bytes after the JPEG end marker (some cameras pad files) or a format without an end marker we read: the
    file is decoded, so a legal file passes and a truncated one fails either way."""
    path = tmp_path / "padded.jpg"
    path.write_bytes(_jpeg_bytes(_gradient()) + b"\0" * 100)
    assert _check(path) == (40, 30)
    bmp = tmp_path / "a.bmp"
    Image.fromarray(_gradient()).save(bmp)
    assert _check(bmp) == (40, 30)
    bmp.write_bytes(bmp.read_bytes()[:-200])
    with pytest.raises(ImageLoadError, match="truncated"):
        _check(bmp)


def test_size_limit_refuses_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    assert DEFAULT_MAX_IMAGE_PIXELS == 89_478_485 == int(1024 * 1024 * 1024 // 4 // 3)  # Pillow's default
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg_bytes(_gradient()))
    for read in (_size, _load, _check):
        with pytest.raises(ImageLoadError, match=r"a.jpg: 40x30 = 1,200 pixels exceeds the image size limit of "
                                                 r"1,199 pixels \(max_image_pixels\); refused before decoding"):
            read(path, max_pixels=1199)
        assert read(path, max_pixels=1200) is not None
    with pytest.raises(ValueError, match="positive integer"):
        _load(path, max_pixels=0)
    _load(path, max_pixels=10**9)  # a limit above Pillow's own raises Pillow's, else Pillow would refuse
    assert Image.MAX_IMAGE_PIXELS == 10**9


@pytest.mark.parametrize("cls", [ImageLoadError, ImageSizeMismatchError])
def test_load_error_crosses_dataloader_workers_with_its_path_and_reason(cls: type, tmp_path: Path) -> None:
    """A DataLoader worker's error is re-raised in the main process as ``cls(message=traceback text)``; the file and
    reason must survive it, so the CLI can print one line instead of a RuntimeError traceback."""
    from torch.utils.data import DataLoader, Dataset

    class Broken(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> int:
            raise cls(tmp_path / "a b.jpg", "truncated: no JPEG end marker: at 12: x")

    with pytest.raises(cls) as raised:
        next(iter(DataLoader(Broken(), num_workers=1)))
    assert raised.value.path == str(tmp_path / "a b.jpg")
    assert raised.value.reason == "truncated: no JPEG end marker: at 12: x"
    assert str(raised.value) == f"{tmp_path / 'a b.jpg'}: truncated: no JPEG end marker: at 12: x"
