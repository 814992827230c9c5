"""Loading an image file as an 8-bit RGB ``PIL.Image`` with defined behaviour for every kind of bad input.

Decisions, stated once here:
    * **EXIF orientation is NOT applied by default.** The ILSVRC devkit XML ``<size>``, wsolevaluation's
      ``image_sizes.txt`` and every box of those data sets refer to the stored pixel array, which is what
      ``PIL.Image.open(path).convert("RGB")`` returns (the loader of wsolevaluation and torchvision's
      ``ImageFolder``; neither applies EXIF orientation). Rotating the pixels while the boxes stay put would
      give a silently wrong score, so ``apply_exif_orientation=True`` is only for data sets annotated on the
      displayed (rotated) image. Either way the loaded size is checked against the metadata size when one
      is given, which catches the mismatch on every 90-degree rotation of a non-square image.
    * **Alpha is composited on white** (``alpha="white"``, what an annotator's viewer shows) unless
      ``alpha="drop"`` asks for ``convert("RGB")``'s behaviour (colour under transparent pixels kept).
    * **16-bit images** (modes ``I;16*``, and ``I`` which Pillow uses for 16-bit PNGs) are scaled to 8 bit
      with ``round(v * 255 / 65535)``; Pillow's own ``convert`` would clip everything above 255 to white.
      Mode ``I`` values outside ``[0, 65535]`` and float images (mode ``F``) raise: their range is unknown.
    * CMYK (Adobe-inverted JPEGs included, Pillow reads the APP14 marker), grayscale, 1-bit and palette
      images are converted with Pillow's ``convert``.
    * Truncated, corrupt, zero-byte, missing and unreadable files raise ``ImageLoadError(path, reason)``.
      Decoding always runs with ``ImageFile.LOAD_TRUNCATED_IMAGES`` off, even if other code switched it on,
      because padding a truncated image with grey would feed the network a different image.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

AlphaPolicy = Literal["white", "drop"]

# EXIF tag 0x0112; values 5..8 swap width and height.
_EXIF_ORIENTATION = 0x0112
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# LOAD_TRUNCATED_IMAGES is a module global of Pillow; the lock keeps concurrent loads in threads from
# restoring each other's value in the wrong order.
_TRUNCATION_LOCK = threading.Lock()


class ImageLoadError(Exception):
    """An image file that cannot be turned into the RGB image its annotations refer to.

    Attributes:
        path: the offending file.
        reason: why, in words (``"file not found"``, ``"truncated: ..."``, ``"size 500x375 ..."``).
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Keep the two-argument constructor picklable so the error crosses DataLoader worker processes.
        return (type(self), (self.path, self.reason))


class ImageSizeMismatchError(ImageLoadError):
    """The decoded image does not have the size its metadata states (boxes would be misplaced)."""


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of ``image`` (1 = upright, also when absent or unreadable)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not make an otherwise fine image unreadable
        return 1


def _open(path: Path) -> Image.Image:
    """``Image.open`` with the file-level failures turned into ``ImageLoadError``."""
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if not path.is_file():
        raise ImageLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not a recognised image format (corrupt or not an image)") from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(path, f"refused by Pillow's decompression-bomb check: {error}") from None
    except OSError as error:
        raise ImageLoadError(path, f"cannot be read: {error}") from None


def read_image_size(path: str | os.PathLike[str], *, apply_exif_orientation: bool = False) -> tuple[int, int]:
    """``(width, height)`` from the file header only (fast; the pixels are not decoded).

    Args:
        path: image file.
        apply_exif_orientation: report the size after EXIF rotation (see the module docstring).

    Returns:
        ``(width, height)`` as ``load_rgb`` with the same option would return it.

    Raises:
        ImageLoadError: missing, empty or unidentifiable file.
    """
    path = Path(path)
    with _open(path) as image:
        width, height = image.size
        if apply_exif_orientation and exif_orientation(image) in (5, 6, 7, 8):
            width, height = height, width
    return width, height


def _to_rgb(image: Image.Image, path: Path, alpha: AlphaPolicy) -> Image.Image:
    """Convert a decoded image of any supported mode to 8-bit RGB (policies in the module docstring)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageLoadError(path, f"mode {mode} values in [{values.min()}, {values.max()}] are not 16-bit")
        gray = np.round(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "F":
        raise ImageLoadError(path, "floating-point image (mode F): unknown value range, convert it to 8-bit first")
    if mode == "P" and "transparency" in image.info:
        # A palette with a transparent index behaves like RGBA.
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        if alpha == "drop":
            return image.convert("RGB")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageLoadError(path, f"cannot convert mode {mode} to RGB: {error}") from None


def load_rgb(
    path: str | os.PathLike[str],
    *,
    expected_size: tuple[int, int] | None = None,
    apply_exif_orientation: bool = False,
    alpha: AlphaPolicy = "white",
) -> Image.Image:
    """Decode ``path`` fully into an 8-bit RGB image.

    Args:
        path: image file.
        expected_size: ``(width, height)`` the annotations refer to (``image_sizes.txt``, XML
            ``<size>``); a different decoded size raises ``ImageSizeMismatchError``.
        apply_exif_orientation: rotate/flip by the EXIF orientation tag (default False: annotations of
            ILSVRC, CUB and OpenImages refer to the stored pixels; see the module docstring).
        alpha: ``"white"`` composites transparent pixels on white, ``"drop"`` discards the alpha channel.

    Returns:
        An RGB ``PIL.Image`` whose pixels are fully loaded (the file is closed).

    Raises:
        ImageLoadError: missing, empty, corrupt or truncated file, unsupported mode, or size mismatch
            (``ImageSizeMismatchError``). The message names the file and the reason.
    """
    path = Path(path)
    with _open(path) as image:
        with _TRUNCATION_LOCK:
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                image.load()
            except OSError as error:
                message = str(error)
                kind = "truncated" if "truncated" in message.lower() else "corrupt"
                raise ImageLoadError(path, f"{kind} image data: {message}") from None
            except Exception as error:  # decoders raise SyntaxError, ValueError, EOFError, zlib.error...
                raise ImageLoadError(path, f"corrupt image data: {type(error).__name__}: {error}") from None
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
        orientation = exif_orientation(image)
        decoded: Image.Image = image
        if apply_exif_orientation and orientation != 1:
            decoded = ImageOps.exif_transpose(image)
        rgb = _to_rgb(decoded, path, alpha)
        # Detach from the file handle before it is closed.
        rgb = rgb.copy() if rgb is image else rgb
    if expected_size is not None and tuple(rgb.size) != tuple(expected_size):
        hint = ""
        if orientation != 1:
            hint = (
                f"; the file has EXIF orientation {orientation}, which is "
                f"{'applied' if apply_exif_orientation else 'not applied'} (apply_exif_orientation="
                f"{apply_exif_orientation})"
            )
        raise ImageSizeMismatchError(
            path,
            f"decoded size {rgb.size[0]}x{rgb.size[1]} differs from the metadata size "
            f"{expected_size[0]}x{expected_size[1]}; its boxes would be misplaced{hint}",
        )
    return rgb
