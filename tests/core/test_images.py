"""The public-domain photographs read from scikit-image's wheel: each checked by its hash, licence recorded."""

import numpy as np
import pytest

from rest_core.data import images


@pytest.mark.parametrize("name", sorted(images.BACKGROUND_PHOTOS) + sorted(images.PORTRAITS))
def test_every_photograph_loads_as_rgb_and_says_where_it_comes_from(name):
    picture = images.photo(name)
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert min(picture.shape[:2]) >= 256
    source = (images.BACKGROUND_PHOTOS | images.PORTRAITS)[name].source
    assert "CC0" in source or "public domain" in source


def test_the_evaluation_portraits_are_never_backgrounds():
    assert not set(images.PORTRAITS) & set(images.BACKGROUND_PHOTOS)
    files = {entry.file for entry in images.BACKGROUND_PHOTOS.values()}
    assert not files & {entry.file for entry in images.PORTRAITS.values()}


@pytest.mark.parametrize("name", sorted(images.PORTRAITS))
def test_each_portrait_has_its_face_box_and_a_mouth_box_inside_it(name):
    entry = images.PORTRAITS[name]
    h, w = images.photo(name).shape[:2]
    x0, y0, x1, y1 = entry.face_box
    assert x1 - x0 == y1 - y0 and 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h
    m0, n0, m1, n1 = entry.mouth_box
    assert x0 < m0 < m1 < x1 and y0 < n0 < n1 < y1


def test_a_file_that_is_not_the_recorded_picture_is_refused(monkeypatch, tmp_path):
    (tmp_path / "coffee.png").write_bytes(b"not the coffee picture")
    monkeypatch.setattr(images, "skimage_data", lambda: tmp_path)
    images.photo.cache_clear()
    with pytest.raises(ValueError, match="SHA-256"):
        images.photo("coffee")
    images.photo.cache_clear()


def test_an_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown photograph"):
        images.photo("mona lisa")
