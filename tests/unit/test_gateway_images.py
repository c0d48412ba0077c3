"""Image checks: allowed formats pass; text, truncated files and decompression bombs are refused."""

from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from binsight.gateway.errors import GatewayError
from binsight.gateway.images import inspect_image
from tests.integration.gateway_servers import bomb_png, make_jpeg, make_png

MAX_PIXELS = 40_000_000


def test_jpeg_and_png_pass():
    info = inspect_image(make_jpeg((40, 30)), MAX_PIXELS)
    assert (info.format, info.width, info.height, info.content_type) == ("JPEG", 40, 30, "image/jpeg")
    assert inspect_image(make_png((8, 9)), MAX_PIXELS).content_type == "image/png"


def refused(data: bytes, max_pixels: int = MAX_PIXELS) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        inspect_image(data, max_pixels)
    return info.value


def test_not_an_image_is_415():
    assert refused(b"hello, world").status == 415
    assert refused(b"").status == 415
    tiff = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiff, format="TIFF")
    assert refused(tiff.getvalue()).status == 415  # a real image, but not an accepted format


def test_truncated_image_is_415():
    noisy = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(noisy, format="JPEG")
    data = noisy.getvalue()
    err = refused(data[: len(data) * 3 // 4])  # the cut lands in the entropy-coded scan, past the header
    assert err.status == 415 and "truncated" in err.message


@pytest.mark.parametrize(("width", "height"), [(20000, 20000), (7000, 7000)])
def test_decompression_bomb_is_413_from_the_header(width, height):
    # 20000x20000 trips Pillow's own guard inside open(); 7000x7000 (49 MP) only ours. Both: 413.
    data = bomb_png(width, height)
    assert len(data) < 100
    err = refused(data)
    assert err.status == 413 and err.code == "image_too_large"


def test_pixel_cap_is_configurable():
    assert refused(make_png((20, 20)), max_pixels=399).status == 413
    inspect_image(make_png((20, 20)), max_pixels=400)
