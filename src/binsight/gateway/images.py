"""Check that bytes are a real, sanely sized image before they are sent to the endpoint.

The header is read lazily (``Image.open`` decodes no pixels) so a decompression bomb — a tiny file that
declares a huge canvas — is refused by its declared size before any pixel memory is allocated. Only then is
the image decoded (JPEGs at a reduced draft scale) to catch truncated or corrupt files.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from binsight.gateway.errors import NotAnImage, TooLarge

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class ImageInfo:
    """What the header said: PIL format name, size, and the content type to send to the endpoint."""

    format: str
    width: int
    height: int
    content_type: str


def inspect_image(data: bytes, max_pixels: int) -> ImageInfo:
    """Validate ``data`` as a JPEG/PNG/WebP/GIF/BMP image of at most ``max_pixels`` pixels.

    Raises:
        NotAnImage: 415 when the bytes are not one of the allowed formats, or are corrupt or truncated.
        TooLarge: 413 (code ``image_too_large``) when width x height exceeds ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise NotAnImage("the body is empty, not an image")
    allowed = ", ".join(ALLOWED_FORMATS)
    with warnings.catch_warnings():
        # PIL's own bomb guard warns (or raises) at ~89 MP; ours is stricter and checked right after open.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except Image.DecompressionBombError as exc:
            raise TooLarge(f"the image is too large: {exc}", code="image_too_large") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            raise NotAnImage(f"the body is not a supported image ({allowed})") from None
        width, height = image.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise TooLarge(
                f"the image declares {width}x{height} pixels, over the {max_pixels}-pixel limit "
                "(set BINSIGHT_GATEWAY_MAX_PIXELS to raise it)",
                code="image_too_large",
            )
        try:
            if image.format == "JPEG":
                # Decoding at 1/8 scale still walks the whole entropy-coded stream, at a fraction of the memory.
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error … for bad files
            raise NotAnImage(f"the {image.format} image is corrupt or truncated: {exc}") from None
    return ImageInfo(image.format, width, height, CONTENT_TYPES.get(image.format, "application/x-image"))
