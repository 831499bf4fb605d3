"""COCO captioning data of CS231n assignment 3, under the course's names (``cs231n/coco_utils.py``).

The course ships the Microsoft COCO 2014 captions (Lin et al., 2014) preprocessed into one
folder (``get_coco_captioning.sh`` unpacks it to ``cs231n/datasets/coco_captioning``):

- ``coco2014_captions.h5``: HDF5 datasets ``train_captions`` / ``val_captions`` (integer
  (N, 17) word ids, ``<START> ... <END>`` padded with ``<NULL>``) and ``train_image_idxs`` /
  ``val_image_idxs`` (N,) (the row of the image's features);
- ``train2014_vgg16_fc7.h5`` / ``val2014_vgg16_fc7.h5``: dataset ``features`` (images, 4096),
  VGG-16 fc7 activations; the ``*_pca.h5`` files hold them reduced to 512 dims by PCA;
- ``coco2014_vocab.json``: ``{"idx_to_word": [...], "word_to_idx": {...}}``;
- ``train2014_urls.txt`` / ``val2014_urls.txt``: one image URL a line, in feature-row order.

Reading HDF5 needs ``h5py``, an optional extra (``pip install 'nn-twins[coco]'``), imported only
when :func:`load_coco_data` runs; the rest of ``numpy_impl`` stays NumPy-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from twin_checks import require_int_param, require_ndim

# The course's location, relative to its package: cs231n/datasets/coco_captioning.
BASE_DIR = os.path.join(os.path.dirname(os.path.realpath(__file__)), "datasets", "coco_captioning")

CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"
CAPTION_KEYS = ("train_captions", "train_image_idxs", "val_captions", "val_image_idxs")
SPLITS = ("train", "val")


def _import_h5py():
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "load_coco_data reads the course's HDF5 files and needs h5py, an optional "
            "dependency: pip install 'nn-twins[coco]' (or pip install h5py)"
        ) from err
    return h5py


def _feature_file(split: str, pca_features: bool) -> str:
    return f"{split}2014_vgg16_fc7{'_pca' if pca_features else ''}.h5"


def _url_file(split: str) -> str:
    return f"{split}2014_urls.txt"


def _required_files(pca_features: bool) -> list[str]:
    return [
        CAPTIONS_FILE,
        *(_feature_file(s, pca_features) for s in SPLITS),
        VOCAB_FILE,
        *(_url_file(s) for s in SPLITS),
    ]


def _check_base_dir(base_dir, pca_features: bool) -> Path:
    base = Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(
            f"base_dir {str(base)!r} is not a directory; pass the folder the course's "
            "get_coco_captioning.sh unpacked (it holds coco2014_captions.h5)"
        )
    missing = [name for name in _required_files(pca_features) if not (base / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"base_dir {str(base)!r} lacks the COCO captioning file(s) {missing} "
            f"(pca_features={pca_features})"
        )
    return base


def _read_captions(h5py, path: Path) -> dict:
    with h5py.File(path, "r") as f:
        data = {k: np.asarray(v) for k, v in f.items()}
    absent = [k for k in CAPTION_KEYS if k not in data]
    if absent:
        raise ValueError(f"{path} lacks the dataset(s) {absent}; it holds {sorted(data)}")
    return data


def _read_features(h5py, path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        if "features" not in f:
            raise ValueError(f"{path} lacks the dataset 'features'; it holds {sorted(f)}")
        features = np.asarray(f["features"])
    require_ndim(f"features of {path.name}", features, 2, "(images, feature dim)")
    return features


def _read_vocab(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        vocab = json.load(f)
    absent = [k for k in ("idx_to_word", "word_to_idx") if k not in vocab]
    if not isinstance(vocab, dict) or absent:
        raise ValueError(f"{path} must be a JSON object with 'idx_to_word' and 'word_to_idx'")
    return vocab


def _read_urls(path: Path) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        return np.asarray([line.strip() for line in f])


def _check_split(data: dict, split: str) -> None:
    """Captions (N, T) of integer ids inside the vocabulary, one image index per caption,
    pointing at a row of the features, one URL per feature row."""
    captions, idxs = data[f"{split}_captions"], data[f"{split}_image_idxs"]
    features, urls = data[f"{split}_features"], data[f"{split}_urls"]
    require_ndim(f"{split}_captions", captions, 2, "(N, T)")
    V = len(data["idx_to_word"])
    if not np.issubdtype(captions.dtype, np.integer) or (
        captions.size and (captions.min() < 0 or captions.max() >= V)
    ):
        raise ValueError(
            f"{split}_captions must hold integer word ids in [0, {V}) (the vocabulary's size), "
            f"got dtype {captions.dtype}"
        )
    if idxs.shape != captions.shape[:1] or not np.issubdtype(idxs.dtype, np.integer):
        raise ValueError(
            f"{split}_image_idxs must be integer ({captions.shape[0]},), one per caption, got "
            f"{idxs.dtype} {idxs.shape}"
        )
    if idxs.size and (idxs.min() < 0 or idxs.max() >= features.shape[0]):
        raise ValueError(
            f"{split}_image_idxs must index the {features.shape[0]} rows of {split}_features, "
            f"got values in [{idxs.min()}, {idxs.max()}]"
        )
    if urls.shape[0] != features.shape[0]:
        raise ValueError(
            f"{_url_file(split)} has {urls.shape[0]} lines, one per image expected "
            f"({features.shape[0]} rows of {split}_features)"
        )


def load_coco_data(base_dir=BASE_DIR, max_train=None, pca_features=True):
    """Load the course's COCO captioning folder into one dict.

    base_dir: the folder of the files listed in the module docstring; max_train: None, or
    subsample that many training captions (drawn WITH replacement by ``np.random.randint``, the
    course's global-state draw, so ``np.random.seed`` fixes it); pca_features: the 512-dim PCA
    features (True) or the 4096-dim fc7 ones.

    Returns data with keys ``train_captions``, ``train_image_idxs``, ``val_captions``,
    ``val_image_idxs`` (from the HDF5 file), ``train_features``, ``val_features`` (images, D),
    ``idx_to_word`` (list), ``word_to_idx`` (dict), ``train_urls``, ``val_urls`` (arrays of
    str). The features are not subsampled: ``*_image_idxs`` index them.
    """
    base = _check_base_dir(base_dir, bool(pca_features))
    h5py = _import_h5py()
    data = _read_captions(h5py, base / CAPTIONS_FILE)
    for split in SPLITS:
        data[f"{split}_features"] = _read_features(h5py, base / _feature_file(split, pca_features))
    data.update(_read_vocab(base / VOCAB_FILE))
    for split in SPLITS:
        data[f"{split}_urls"] = _read_urls(base / _url_file(split))
        _check_split(data, split)

    if max_train is not None:
        max_train = require_int_param("max_train", max_train, 1)
        num_train = data["train_captions"].shape[0]
        if num_train == 0:
            raise ValueError("max_train needs training captions to draw from; there are none")
        mask = np.random.randint(num_train, size=max_train)  # noqa: NPY002 -- the course's draw
        data["train_captions"] = data["train_captions"][mask]
        data["train_image_idxs"] = data["train_image_idxs"][mask]
    return data


def decode_captions(captions, idx_to_word):
    """Word ids -> text, as the course decodes them.

    captions: integer (N, T) or (T,); idx_to_word: list or dict index -> word. '<NULL>' words
    are skipped, '<START>' is kept, '<END>' is kept and ends the caption. Returns a list of N
    strings, or one string for a 1-D caption.
    """
    captions = np.asarray(captions)
    require_ndim("captions", captions, (1, 2), "(N, T) or (T,)")
    if captions.size and not np.issubdtype(captions.dtype, np.integer):
        raise TypeError(f"captions must hold integer word ids, got dtype {captions.dtype}")
    singleton = captions.ndim == 1
    rows = captions[None] if singleton else captions
    decoded = []
    for row in rows:
        words = []
        for idx in row:
            try:
                if idx < 0:  # a list would wrap it around to its last words
                    raise IndexError
                word = idx_to_word[int(idx)]
            except (IndexError, KeyError):
                raise ValueError(
                    f"captions hold the word id {int(idx)}, which idx_to_word "
                    f"({len(idx_to_word)} words) does not have"
                ) from None
            if word != "<NULL>":
                words.append(word)
            if word == "<END>":
                break
        decoded.append(" ".join(words))
    return decoded[0] if singleton else decoded


def sample_coco_minibatch(data, batch_size=100, split="train"):
    """A random minibatch of one split (drawn WITH replacement by ``np.random.choice``, the
    course's global-state draw).

    data: the dict of :func:`load_coco_data`; batch_size >= 1; split 'train' or 'val'.
    Returns captions (batch_size, T), image_features (batch_size, D), urls (batch_size,).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    batch_size = require_int_param("batch_size", batch_size, 1)
    keys = [f"{split}_{k}" for k in ("captions", "image_idxs", "features", "urls")]
    absent = [k for k in keys if k not in data]
    if absent:
        raise KeyError(f"data lacks {absent} (load it with load_coco_data)")
    split_size = data[f"{split}_captions"].shape[0]
    if split_size == 0:
        raise ValueError(f"the {split!r} split has no captions to sample")
    mask = np.random.choice(split_size, batch_size)  # noqa: NPY002 -- the course's draw
    captions = data[f"{split}_captions"][mask]
    image_idxs = data[f"{split}_image_idxs"][mask]
    image_features = data[f"{split}_features"][image_idxs]
    urls = data[f"{split}_urls"][image_idxs]
    return captions, image_features, urls
