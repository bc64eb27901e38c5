"""Reading images and writing labels: tif / OME-TIFF, zarr / OME-Zarr, png / jpg."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import zarr

from napari_sam.errors import NotAnImageError
from napari_sam.io import find_images, image_name, read_image, write_labels

AXES_TCZYX = [
    {"name": "t", "type": "time"},
    {"name": "c", "type": "channel"},
    {"name": "z", "type": "space", "unit": "micrometer"},
    {"name": "y", "type": "space", "unit": "micrometer"},
    {"name": "x", "type": "space", "unit": "micrometer"},
]
SCALE = [1.0, 1.0, 2.0, 0.5, 0.25]


def make_ome_zarr(path, data, *, version="0.4"):
    """A minimal OME-Zarr image (one level) with axes t, c, z, y, x; 0.4 → zarr v2, 0.5 → zarr v3."""
    zarr_format = 2 if version == "0.4" else 3
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    options = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2 else {}
    array = group.create_array(
        "0", shape=data.shape, chunks=(1, 1, 1, *data.shape[-2:]), dtype=data.dtype, **options
    )
    array[...] = data
    multiscale = {
        "axes": AXES_TCZYX,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": SCALE}]}],
    }
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path


def attrs_of(path):
    for name in ("zarr.json", ".zattrs"):
        if (path / name).is_file():
            doc = json.loads((path / name).read_text())
            return doc.get("attributes", {}) if name == "zarr.json" else doc
    raise AssertionError(f"no zarr metadata in {path}")


@pytest.fixture
def stack():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(3, 40, 56), dtype=np.uint16)


@pytest.fixture
def labels():
    rng = np.random.default_rng(1)
    return rng.integers(0, 7, size=(3, 40, 56)).astype(np.uint32)


# ---------------------------------------------------------------------------------------------- reading


def test_uncompressed_tif_is_memory_mapped(tmp_path, stack):
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    image = read_image(tmp_path / "s.tif")
    assert isinstance(image, np.memmap)
    np.testing.assert_array_equal(image, stack)


def test_compressed_tif_reads_eagerly_when_small_and_lazily_when_big(tmp_path, stack, monkeypatch):
    import dask.array as da

    import napari_sam.io.reading as io

    tifffile.imwrite(tmp_path / "s.tif", stack, compression="zlib", photometric="minisblack")
    small = read_image(tmp_path / "s.tif")
    assert type(small) is np.ndarray
    np.testing.assert_array_equal(small, stack)
    monkeypatch.setattr(io, "_EAGER_TIF_BYTES", 0)
    big = read_image(tmp_path / "s.tif")
    assert isinstance(big, da.Array) and big.chunksize == (1, 40, 56)
    np.testing.assert_array_equal(big[1].compute(), stack[1])


def test_ome_tif_axes_put_channels_last(tmp_path):
    data = np.arange(3 * 2 * 8 * 9, dtype=np.uint16).reshape(3, 2, 8, 9)  # Z C Y X
    tifffile.imwrite(tmp_path / "x.ome.tif", data, metadata={"axes": "ZCYX"})
    image = read_image(tmp_path / "x.ome.tif")
    assert image.shape == (3, 8, 9, 2)
    np.testing.assert_array_equal(np.asarray(image), np.moveaxis(data, 1, -1))


def test_ome_tif_with_time_points_is_refused(tmp_path):
    data = np.zeros((2, 3, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.ome.tif", data, metadata={"axes": "TZYX"})
    with pytest.raises(ValueError, match="split"):
        read_image(tmp_path / "t.ome.tif")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_png_and_jpg(tmp_path, suffix):
    from PIL import Image

    rows, cols = np.mgrid[0:30, 0:40]
    rgb = np.stack([rows * 8, cols * 6, rows + cols], axis=-1).astype(np.uint8)  # smooth: jpg keeps it
    Image.fromarray(rgb).save(tmp_path / f"p{suffix}")
    image = read_image(tmp_path / f"p{suffix}")
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    if suffix == ".png":
        np.testing.assert_array_equal(image, rgb)
    else:
        assert np.abs(image.astype(int) - rgb).mean() < 3  # lossy


def test_plain_zarr_array_is_not_loaded(tmp_path, stack):
    zarr.create_array(str(tmp_path / "a.zarr"), data=stack, chunks=(1, 40, 56))
    image = read_image(tmp_path / "a.zarr")
    assert isinstance(image, zarr.Array)
    np.testing.assert_array_equal(image[2], stack[2])


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_reads_first_level_lazily_in_napari_order(tmp_path, version):
    import dask.array as da

    data = np.random.default_rng(3).integers(0, 999, size=(1, 2, 3, 16, 20), dtype=np.uint16)
    path = make_ome_zarr(tmp_path / "img.ome.zarr", data, version=version)
    image = read_image(path)
    assert isinstance(image, da.Array)
    assert image.shape == (3, 16, 20, 2)
    np.testing.assert_array_equal(image[1].compute(), np.moveaxis(data[0, :, 1], 0, -1))


def test_ome_zarr_whose_first_level_is_not_an_array_is_refused_by_name(tmp_path, labels):
    # a malformed image whose multiscale level is a group was an AttributeError (a Group has no ndim)
    path = tmp_path / "bad.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_group("0")
    multiscale = {"axes": AXES_TCZYX[2:], "datasets": [{"path": "0"}]}
    group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    with pytest.raises(NotAnImageError, match="multiscale level '0' is not an array"):
        read_image(path)
    with pytest.raises(ValueError, match="multiscale level '0' is not an array"):
        write_labels(path, labels)


def test_files_that_are_not_images_fail_clearly(tmp_path):
    (tmp_path / "notes.tif").write_text("not a tiff")
    with pytest.raises(NotAnImageError, match=r"notes\.tif is not a readable TIFF"):
        read_image(tmp_path / "notes.tif")
    (tmp_path / "a.png").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="not a readable"):
        read_image(tmp_path / "a.png")
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"unsupported image format '\.csv'"):
        read_image(tmp_path / "table.csv")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.tif")
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_array("a", shape=(4, 4), dtype="u1")
    group.create_array("b", shape=(4, 4), dtype="u1")
    with pytest.raises(ValueError, match="several arrays"):
        read_image(tmp_path / "g.zarr")


def test_find_images_expands_folders_and_keeps_explicit_files(tmp_path, stack):
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "b.tif", stack, photometric="minisblack")
    tifffile.imwrite(folder / "a.ome.tif", stack, photometric="minisblack")
    zarr.create_array(str(folder / "c.zarr"), data=stack)
    (folder / "readme.txt").write_text("x")
    (folder / ".hidden.tif").write_text("x")
    extra = tmp_path / "odd.dat"
    extra.write_text("x")
    found = find_images([folder, extra])
    assert [p.name for p in found] == ["a.ome.tif", "b.tif", "c.zarr", "odd.dat"]
    assert [image_name(p) for p in found[:3]] == ["a", "b", "c"]
    with pytest.raises(FileNotFoundError, match="nope"):
        find_images([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        find_images([tmp_path / "empty"])


# ---------------------------------------------------------------------------------------------- writing


def test_tif_labels_round_trip_compressed(tmp_path, labels):
    out = write_labels(tmp_path / "l.tif", labels)
    assert out == tmp_path / "l.tif"
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    np.testing.assert_array_equal(read_image(out), labels)
    assert [p.name for p in tmp_path.iterdir()] == ["l.tif"]  # no temporary left behind


def test_zarr_labels_are_a_chunked_zarr_v3_array(tmp_path, labels):
    import dask.array as da

    out = write_labels(tmp_path / "l.zarr", da.from_array(labels, chunks=(1, 40, 56)))
    array = zarr.open_array(str(out), mode="r")
    assert array.metadata.zarr_format == 3
    assert array.chunks == (1, 40, 56) and array.dtype == np.uint32
    np.testing.assert_array_equal(array[...], labels)
    np.testing.assert_array_equal(read_image(out)[...], labels)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_existing_labels_are_never_overwritten_unless_asked(tmp_path, labels, suffix):
    path = write_labels(tmp_path / f"l{suffix}", labels)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_labels(path, labels + 1)
    np.testing.assert_array_equal(np.asarray(read_image(path)[...]), labels)
    write_labels(path, labels + 1, overwrite=True)
    np.testing.assert_array_equal(np.asarray(read_image(path)[...]), labels + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"l{suffix}"]


def test_bad_labels_are_refused(tmp_path, labels):
    with pytest.raises(TypeError, match="integer"):
        write_labels(tmp_path / "l.tif", labels.astype(float))
    with pytest.raises(ValueError, match="2D"):
        write_labels(tmp_path / "l.tif", labels[None])
    with pytest.raises(ValueError, match="must end in"):
        write_labels(tmp_path / "l.png", labels)
    with pytest.raises(FileNotFoundError, match="output folder"):
        write_labels(tmp_path / "no" / "l.tif", labels)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_labels_into_the_image(tmp_path, labels, version):
    data = np.random.default_rng(4).integers(0, 999, size=(1, 2, 3, 40, 56), dtype=np.uint16)
    image = make_ome_zarr(tmp_path / "img.ome.zarr", data, version=version)
    out = write_labels(image, labels)
    assert out == image / "labels" / "segmentation"
    container = attrs_of(image / "labels")
    meta = attrs_of(out)
    if version == "0.5":
        container, meta = container["ome"], meta["ome"]
        assert meta["version"] == "0.5"
    assert container["labels"] == ["segmentation"]
    assert meta["image-label"]["source"]["image"] == "../../"
    multiscale = meta["multiscales"][0]
    assert [a["name"] for a in multiscale["axes"]] == ["t", "c", "z", "y", "x"]
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == SCALE
    stored = zarr.open_array(str(out / "0"), mode="r")
    assert stored.shape == (1, 1, 3, 40, 56)
    assert stored.metadata.zarr_format == (2 if version == "0.4" else 3)
    np.testing.assert_array_equal(stored[0, 0], labels)
    np.testing.assert_array_equal(zarr.open_array(str(image / "0"), mode="r")[...], data)  # image untouched
    with pytest.raises(FileExistsError):
        write_labels(image, labels)
    write_labels(image, labels[:, :, ::-1], name="second")
    listed = attrs_of(image / "labels")
    listed = listed["ome"] if version == "0.5" else listed
    assert listed["labels"] == ["segmentation", "second"]


def test_ome_zarr_labels_beside_the_image(tmp_path, labels):
    data = np.zeros((1, 1, 3, 40, 56), dtype=np.uint8)
    image = make_ome_zarr(tmp_path / "img.ome.zarr", data)
    (tmp_path / "out").mkdir()
    out = write_labels(tmp_path / "out" / "img_labels.zarr", labels, like=image)
    meta = attrs_of(out)
    assert meta["image-label"] == {"version": "0.4", "source": {"image": "../../img.ome.zarr"}}
    assert meta["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == SCALE
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[0, 0], labels)
    with pytest.raises(ValueError, match="do not fit"):
        write_labels(tmp_path / "out" / "wrong.zarr", labels[:, :20], like=image)
