"""Image checks done before any pixel is decoded, and the one decode of untrusted image bytes.

Only JPEG and PNG are accepted, recognised by their magic bytes (not by the file name or the declared
type). A declared content type must agree with the bytes (``image/png`` carrying a JPEG is refused);
``application/x-image``, ``application/octet-stream`` or no type accept either. From the header alone
(``Image.open`` decodes no pixels) the pixel count is bounded, and so is the ratio of decoded to compressed
size: a 631-byte JPEG that declares 6000x6000 pixels would cost 100 MB and a second of CPU to decode.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from binsight.inputs.values import ApiError

MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
DECLARED = {"image/jpeg": "JPEG", "image/jpg": "JPEG", "image/pjpeg": "JPEG", "image/png": "PNG"}
ANY_IMAGE_TYPES = frozenset({"", "application/x-image", "application/octet-stream", "binary/octet-stream"})
DEFAULT_MAX_PIXELS = 40_000_000
# Decoded RGB bytes per compressed byte. Real photos are 5-30; solid-colour test images a few hundred.
DEFAULT_MAX_DECODE_RATIO = 1000
# Images up to this many pixels are cheap to decode whatever their ratio (a blank 1 MP PNG is ~3 KB).
RATIO_FREE_PIXELS = 1_000_000


@dataclass(frozen=True)
class ImageLimits:
    """Bounds checked from the header: ``max_pixels`` (width x height) and ``max_decode_ratio``."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decode_ratio: float = DEFAULT_MAX_DECODE_RATIO


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: format (``JPEG``/``PNG``), size, and the matching content type."""

    format: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def sniff(data: bytes) -> str | None:
    """``"JPEG"`` or ``"PNG"`` from the magic bytes, else None."""
    for magic, name in MAGIC.items():
        if data.startswith(magic):
            return name
    return None


def _open(data: bytes, declared: str | None, limits: ImageLimits) -> tuple[Image.Image, ImageHeader]:
    if not data:
        raise ApiError(400, "empty_body", "the image is empty; expected JPEG or PNG bytes")
    kind = sniff(data)
    if kind is None:
        raise ApiError(415, "invalid_image", "the bytes are not a JPEG or PNG image (only those are accepted)")
    media = (declared or "").split(";", 1)[0].strip().lower()
    if media not in ANY_IMAGE_TYPES and DECLARED.get(media, kind) != kind:
        raise ApiError(415, "content_type_mismatch", f"the content type says {media} but the bytes are a {kind} image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own bounds are stricter
        try:
            image = Image.open(io.BytesIO(data), formats=[kind])
        except Image.DecompressionBombError as exc:
            raise ApiError(413, "image_too_large", f"the image is too large: {exc}") from None
        except Exception:  # PIL raises OSError, SyntaxError, ValueError … for a bad header
            raise ApiError(415, "invalid_image", f"the {kind} header is corrupt") from None
    width, height = image.size
    pixels = width * height
    if width < 1 or height < 1 or pixels > limits.max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"the image declares {width}x{height} = {pixels / 1e6:.1f} MP, over the limit of "
            f"{limits.max_pixels / 1e6:g} MP; refusing to decode it (resize it first)",
        )
    if pixels > RATIO_FREE_PIXELS and pixels * 3 > limits.max_decode_ratio * len(data):
        raise ApiError(
            413,
            "image_too_large",
            f"the image declares {width}x{height} pixels in only {len(data)} bytes (more than "
            f"{limits.max_decode_ratio:g}x expansion when decoded); refusing it as a decompression bomb",
        )
    return image, ImageHeader(kind, width, height)


def check_image(data: bytes, declared: str | None, limits: ImageLimits, *, verify: bool = True) -> ImageHeader:
    """Check ``data`` as a JPEG/PNG within ``limits``; with ``verify`` also decode it (JPEG at 1/8 scale) to
    catch corrupt or truncated files.

    Raises:
        ApiError: 400 ``empty_body``; 415 ``invalid_image`` / ``content_type_mismatch``; 413
            ``image_too_large``.
    """
    image, header = _open(data, declared, limits)
    if verify:
        try:
            if header.format == "JPEG":
                image.draft("RGB", (max(1, header.width // 8), max(1, header.height // 8)))
            image.load()
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error …
            raise ApiError(415, "invalid_image", f"the {header.format} image is corrupt or truncated: {exc}") from None
    return header


def decode_image(data: bytes, declared: str | None, limits: ImageLimits) -> Image.Image:
    """Check ``data`` like :func:`check_image`, then decode it to RGB (EXIF kept for the resize step).

    Raises:
        ApiError: as :func:`check_image`.
    """
    image, header = _open(data, declared, limits)
    try:
        image.load()
        return image.convert("RGB")
    except Exception as exc:
        raise ApiError(415, "invalid_image", f"the {header.format} image is corrupt or truncated: {exc}") from None
