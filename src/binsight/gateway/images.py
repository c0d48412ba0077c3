"""Check that bytes are a real, sanely sized JPEG or PNG before they are sent to the endpoint.

The checks are the model server's own (:func:`binsight.inputs.images.check_image`): magic bytes, the declared
type against the bytes, pixel count and decode ratio from the header before any pixel is decoded, then a
decode (JPEGs at 1/8 scale) to catch truncated or corrupt files. Checking here saves the endpoint call.
"""

from __future__ import annotations

from binsight.gateway.errors import from_input_error
from binsight.inputs.images import ImageHeader, ImageLimits, check_image
from binsight.inputs.values import ApiError

ALLOWED_FORMATS = ("JPEG", "PNG")


def inspect_image(data: bytes, max_pixels: int, declared: str | None = None) -> ImageHeader:
    """Validate ``data`` as a JPEG/PNG image of at most ``max_pixels`` pixels whose bytes match ``declared``.

    Raises:
        NotAnImage: 415 when the bytes are not JPEG/PNG, do not match the declared type, or are corrupt.
        TooLarge: 413 (code ``image_too_large``) over ``max_pixels`` or the decode-ratio bound.
    """
    try:
        return check_image(data, declared, ImageLimits(max_pixels=max_pixels))
    except ApiError as exc:
        raise from_input_error(exc) from None
