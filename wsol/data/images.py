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
    * **Image size limit: ``data.max_image_pixels`` = 89,478,485 pixels** (width x height; Pillow's own
      decompression-bomb warning threshold, an RGB image of 256 MiB once decoded). A larger image is refused
      from its header, before any pixel is decoded, naming the file and its size. Measured: loading a JPEG at
      the limit (9459x9459) takes 680 MiB of peak memory and 2.6 s per DataLoader worker, a 4000x4000 one
      120 MiB and 0.6 s; the limit keeps a stray scan or panorama from taking a machine's memory (a
      decompression bomb, a few MB on disk, would otherwise take GBs). Every reader takes ``max_pixels``
      (data configs: ``data.max_image_pixels``; ``wsol-prepare check`` / ``wsol-score``:
      ``--max-image-pixels``); a limit above Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` raises Pillow's to it,
      since Pillow would otherwise refuse those images itself.
    * **Truncation is found without decoding** (``check_image(level="header")``): a complete JPEG ends with
      its EOI marker ``FF D9`` and a complete PNG with its ``IEND`` chunk, and neither can end that way when cut
      short (``FF D9`` cannot occur inside JPEG entropy-coded data, and Pillow's header parser has already
      read up to the scan). Reading those last bytes through the file Pillow already opened costs next to
      nothing: 0.18 ms per original-size ILSVRC val JPEG for header + end marker, 0.16 ms for the header alone,
      3.8 ms for a full decode (measured on ``../shared/data``, page cache warm). Files that do not prove themselves
      complete this way (other formats, bytes after the end marker) are decoded in full.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import IO, Literal

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

#: Pillow's own ``MAX_IMAGE_PIXELS`` (a fact of Pillow: ``int(1024 * 1024 * 1024 // 4 // 3)``, module docstring). A
#: run's limit is ``data.max_image_pixels`` (``configs/data/*.yaml``, whose value this is), which every loader takes as
#: a required argument; this constant is only the limit of sizes that are never loaded (``wsol.data.imagenette``'s
#: original ILSVRC2012 val images, whose sizes map the boxes but whose pixels are never decoded).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# The last bytes of a complete file, by Pillow format name (module docstring).
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82"}
CheckImageLevel = Literal["header", "decode"]


class ImageLoadError(Exception):
    """An image file that cannot be turned into the RGB image its annotations refer to.

    Attributes:
        path: the offending file.
        reason: why, in words (``"file not found"``, ``"truncated: ..."``, ``"size 500x375 ..."``).
    """

    # PyTorch's DataLoader re-raises an error from a worker process as ``type(error)(message=text)`` when the class
    # has a ``message`` attribute (else as a RuntimeError); ``text`` ends with the line "<module.Class>: path: reason".
    message = "an image file could not be loaded"

    def __init__(self, path: str | os.PathLike[str] = "", reason: str = "", *, message: str | None = None) -> None:
        if message is not None:  # re-raised from a DataLoader worker: the same path and reason, same text
            last = message.rstrip().splitlines()[-1] if message.strip() else ""
            kind, _, text = last.partition(": ")
            path, _, reason = text.partition(": ") if kind.endswith("Error") else ("", "", message)
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Pickle with the two-argument constructor (multiprocessing pickles exceptions; DataLoader workers re-raise
        # through ``message`` above instead).
        return (type(self), (self.path, self.reason))


class ImageSizeMismatchError(ImageLoadError):
    """The decoded image does not have the size its metadata states (boxes would be misplaced)."""


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of ``image`` (1 = upright, also when absent or unreadable)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not make an otherwise fine image unreadable
        return 1


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` as an int after checking it is positive; Pillow's own limit is raised to it if lower."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_image_pixels must be a positive integer, got {max_pixels!r}")
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        # Pillow warns above its limit and refuses above twice it; the user's limit is the one that counts.
        Image.MAX_IMAGE_PIXELS = max_pixels
    return max_pixels


def _open(path: Path, max_pixels: int) -> Image.Image:
    """``Image.open`` with the file-level failures and the size limit turned into ``ImageLoadError``."""
    max_pixels = check_max_pixels(max_pixels)
    if not path.exists():
        raise ImageLoadError(path, "file not found")
    if not path.is_file():
        raise ImageLoadError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not a recognised image format (corrupt or not an image)") from None
    except Image.DecompressionBombError as error:
        raise ImageLoadError(path, f"larger than the image size limit of {max_pixels:,} pixels "
                                   f"(max_image_pixels); Pillow: {error}") from None
    except OSError as error:
        raise ImageLoadError(path, f"cannot be read: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageLoadError(
            path, f"{width}x{height} = {width * height:,} pixels exceeds the image size limit of {max_pixels:,} "
                  f"pixels (max_image_pixels); refused before decoding")
    return image


def read_image_size(path: str | os.PathLike[str], *, apply_exif_orientation: bool,
                    max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` from the file header only (fast; the pixels are not decoded).

    Args:
        path: image file.
        apply_exif_orientation: report the size after EXIF rotation (see the module docstring).
        max_pixels: images with more pixels are refused (module docstring).

    Returns:
        ``(width, height)`` as ``load_rgb`` with the same option would return it.

    Raises:
        ImageLoadError: missing, empty, unidentifiable or too large file.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
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
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    max_pixels: int,
) -> Image.Image:
    """Decode ``path`` fully into an 8-bit RGB image.

    Args:
        path: image file.
        expected_size: ``(width, height)`` the annotations refer to (``image_sizes.txt``, XML
            ``<size>``); a different decoded size raises ``ImageSizeMismatchError``.
        apply_exif_orientation: rotate/flip by the EXIF orientation tag (``data.apply_exif_orientation``, false in
            the configs: annotations of ILSVRC, CUB and OpenImages refer to the stored pixels; module docstring).
        alpha: ``"white"`` composites transparent pixels on white, ``"drop"`` discards the alpha channel
            (``data.alpha``).
        max_pixels: images with more pixels are refused before decoding (``data.max_image_pixels``; module
            docstring).

    Returns:
        An RGB ``PIL.Image`` whose pixels are fully loaded (the file is closed).

    Raises:
        ImageLoadError: missing, empty, corrupt, truncated or too large file, unsupported mode, or size
            mismatch (``ImageSizeMismatchError``). The message names the file and the reason.
    """
    path = Path(path)
    with _open(path, max_pixels) as image:
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
        raise _size_mismatch(path, rgb.size, expected_size, orientation, apply_exif_orientation)
    return rgb


def _size_mismatch(path: Path, size: tuple[int, int], expected: tuple[int, int], orientation: int,
                   apply_exif_orientation: bool, what: str = "decoded size") -> ImageSizeMismatchError:
    hint = ""
    if orientation != 1:
        hint = (
            f"; the file has EXIF orientation {orientation}, which is "
            f"{'applied' if apply_exif_orientation else 'not applied'} (apply_exif_orientation="
            f"{apply_exif_orientation})"
        )
    return ImageSizeMismatchError(
        path,
        f"{what} {size[0]}x{size[1]} differs from the metadata size "
        f"{expected[0]}x{expected[1]}; its boxes would be misplaced{hint}",
    )


def _ends_with(handle: IO[bytes], marker: bytes) -> bool:
    """Whether the open file's last bytes are ``marker`` (one seek and one small read; moves the position)."""
    handle.seek(0, os.SEEK_END)
    if handle.tell() < len(marker):
        return False
    handle.seek(-len(marker), os.SEEK_END)
    return handle.read(len(marker)) == marker


def check_image(
    path: str | os.PathLike[str],
    *,
    level: CheckImageLevel = "header",
    expected_size: tuple[int, int] | None = None,
    apply_exif_orientation: bool,
    alpha: AlphaPolicy,
    max_pixels: int,
) -> tuple[int, int]:
    """Check that ``load_rgb`` will succeed on ``path``, as cheaply as the level allows.

    Args:
        path: image file.
        level: ``"header"``: the header (format, size, size limit, metadata size) and the end-of-file marker,
            which finds truncated JPEG and PNG files without decoding them; a file that does not prove itself
            complete this way is decoded (module docstring). ``"decode"``: ``load_rgb`` in full (also corrupt
            pixel data and unsupported modes).
        expected_size: ``(width, height)`` the annotations state, or ``None``.
        apply_exif_orientation, alpha, max_pixels: as ``load_rgb``.

    Returns:
        ``(width, height)`` of the image as ``load_rgb`` returns it.

    Raises:
        ImageLoadError: as ``load_rgb`` (``ImageSizeMismatchError`` for a size other than ``expected_size``).
    """
    path = Path(path)
    if level not in ("header", "decode"):
        raise ValueError(f"level must be 'header' or 'decode', got {level!r}")
    if level == "header":
        with _open(path, max_pixels) as image:
            size = image.size
            # EXIF is parsed only when it matters (it costs more than the header itself).
            orientation = exif_orientation(image) if apply_exif_orientation or expected_size is not None and \
                tuple(size) != tuple(expected_size) else 1
            if apply_exif_orientation and orientation in (5, 6, 7, 8):
                size = (size[1], size[0])
            if expected_size is not None and tuple(size) != tuple(expected_size):
                raise _size_mismatch(path, size, expected_size, orientation, apply_exif_orientation, "size")
            marker = _END_MARKERS.get(image.format or "")
            try:
                complete = marker is not None and _ends_with(image.fp, marker)
            except OSError as error:
                raise ImageLoadError(path, f"cannot be read: {error}") from None
        if complete:
            return int(size[0]), int(size[1])
    rgb = load_rgb(path, expected_size=expected_size, apply_exif_orientation=apply_exif_orientation, alpha=alpha,
                   max_pixels=max_pixels)
    return rgb.size
