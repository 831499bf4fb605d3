"""numpy_impl.coco_utils on a small coco_captioning folder written in the course's format
(HDF5 datasets under the course's names, coco2014_vocab.json, URL lists): loading, subsampling,
minibatches, decoding, and clear errors for missing files, a wrong base_dir and bad contents.

The loader needs h5py (the ``coco`` extra); without it the tests that write HDF5 files skip.
"""

from __future__ import annotations

import builtins
import json
import re

import numpy as np
import pytest

from numpy_impl.coco_utils import decode_captions, load_coco_data, sample_coco_minibatch

WORDS = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "cat", "on", "mat", "dog"]
T = 7


def _captions(rng, N):
    captions = np.zeros((N, T), dtype=np.int32)
    for n in range(N):
        k = int(rng.integers(1, T - 1))
        captions[n, : k + 2] = [1, *rng.integers(3, len(WORDS), k), 2]
    return captions


def write_coco_folder(root, rng, num_train=(12, 5), num_val=(6, 3), dims=(4, 10)):
    """A coco_captioning folder: (captions, images) per split, (PCA, fc7) feature dims.

    Returns the arrays written, keyed like load_coco_data's dict (features per variant).
    """
    h5py = pytest.importorskip("h5py")
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, (n_captions, n_images) in (("train", num_train), ("val", num_val)):
        written[f"{split}_captions"] = _captions(rng, n_captions)
        written[f"{split}_image_idxs"] = rng.integers(0, n_images, n_captions).astype(np.int32)
        for suffix, dim in zip(("_pca", ""), dims, strict=True):
            features = rng.standard_normal((n_images, dim)).astype(np.float32)
            written[f"{split}_features{suffix}"] = features
            with h5py.File(root / f"{split}2014_vgg16_fc7{suffix}.h5", "w") as f:
                f.create_dataset("features", data=features)
        urls = [f"http://images.example/{split}/{i}.jpg" for i in range(n_images)]
        written[f"{split}_urls"] = np.asarray(urls)
        (root / f"{split}2014_urls.txt").write_text("\n".join(urls) + "\n")
    with h5py.File(root / "coco2014_captions.h5", "w") as f:
        for key in ("train_captions", "train_image_idxs", "val_captions", "val_image_idxs"):
            f.create_dataset(key, data=written[key])
    vocab = {"idx_to_word": WORDS, "word_to_idx": {w: i for i, w in enumerate(WORDS)}}
    (root / "coco2014_vocab.json").write_text(json.dumps(vocab))
    return written


@pytest.fixture()
def coco(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "coco_captioning"
    return root, write_coco_folder(root, rng)


@pytest.mark.parametrize("pca_features", [True, False])
def test_load_reads_every_file_of_the_course_format(coco, pca_features):
    root, written = coco
    data = load_coco_data(base_dir=root, pca_features=pca_features)
    suffix = "_pca" if pca_features else ""
    expected_keys = {
        "train_captions",
        "train_image_idxs",
        "val_captions",
        "val_image_idxs",
        "train_features",
        "val_features",
        "idx_to_word",
        "word_to_idx",
        "train_urls",
        "val_urls",
    }
    assert set(data) == expected_keys
    for split in ("train", "val"):
        np.testing.assert_array_equal(data[f"{split}_captions"], written[f"{split}_captions"])
        assert data[f"{split}_captions"].dtype == np.int32
        np.testing.assert_array_equal(data[f"{split}_image_idxs"], written[f"{split}_image_idxs"])
        np.testing.assert_array_equal(
            data[f"{split}_features"], written[f"{split}_features{suffix}"]
        )
        np.testing.assert_array_equal(data[f"{split}_urls"], written[f"{split}_urls"])
    assert data["idx_to_word"] == WORDS
    assert data["word_to_idx"]["cat"] == WORDS.index("cat")


def test_max_train_subsamples_captions_with_the_course_draw(coco):
    root, written = coco
    np.random.seed(231)  # noqa: NPY002 -- the course's seeding
    data = load_coco_data(base_dir=root, max_train=20)
    mask = np.random.RandomState(231).randint(12, size=20)  # with replacement, as the course
    np.testing.assert_array_equal(data["train_captions"], written["train_captions"][mask])
    np.testing.assert_array_equal(data["train_image_idxs"], written["train_image_idxs"][mask])
    # Features are not subsampled: the image indices still point into all of them.
    assert data["train_features"].shape == written["train_features_pca"].shape
    np.testing.assert_array_equal(data["val_captions"], written["val_captions"])


def test_sample_coco_minibatch_pairs_captions_with_their_images(coco):
    root, written = coco
    data = load_coco_data(base_dir=root)
    np.random.seed(5)  # noqa: NPY002 -- the course's seeding
    captions, features, urls = sample_coco_minibatch(data, batch_size=9, split="val")
    mask = np.random.RandomState(5).choice(6, 9)
    np.testing.assert_array_equal(captions, written["val_captions"][mask])
    image_idxs = written["val_image_idxs"][mask]
    np.testing.assert_array_equal(features, written["val_features_pca"][image_idxs])
    np.testing.assert_array_equal(urls, written["val_urls"][image_idxs])
    assert captions.shape == (9, T) and features.shape == (9, 4) and urls.shape == (9,)


def test_decode_captions_keeps_start_and_end_and_drops_padding():
    idx_to_word = WORDS
    captions = np.array([[1, 4, 5, 2, 0, 0], [4, 8, 0, 6, 2, 7], [0, 0, 0, 0, 0, 0]])
    assert decode_captions(captions, idx_to_word) == [
        "<START> a cat <END>",
        "a dog on <END>",  # <NULL> in the middle is skipped; words after <END> are cut
        "",
    ]
    assert decode_captions(captions[0], idx_to_word) == "<START> a cat <END>"
    as_dict = dict(enumerate(WORDS))
    assert decode_captions(captions, as_dict) == decode_captions(captions, idx_to_word)
    assert decode_captions(np.zeros((0, 4), np.int64), WORDS) == []


def test_the_loaded_vocabulary_decodes_the_loaded_captions(coco):
    root, _ = coco
    data = load_coco_data(base_dir=root)
    for text in decode_captions(data["train_captions"], data["idx_to_word"]):
        words = text.split()
        assert words[0] == "<START>" and words[-1] == "<END>" and "<NULL>" not in words


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


def test_wrong_base_dir_names_the_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"base_dir .*nowhere.* is not a directory"):
        load_coco_data(base_dir=missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"coco2014_captions\.h5"):
        load_coco_data(base_dir=empty)


@pytest.mark.parametrize(
    ("name", "pca_features"),
    [
        ("coco2014_captions.h5", True),
        ("val2014_vgg16_fc7_pca.h5", True),
        ("train2014_vgg16_fc7.h5", False),
        ("coco2014_vocab.json", True),
        ("train2014_urls.txt", True),
    ],
)
def test_missing_file_is_named(coco, name, pca_features):
    root, _ = coco
    (root / name).unlink()
    with pytest.raises(FileNotFoundError, match="lacks .*" + re.escape(name)):
        load_coco_data(base_dir=root, pca_features=pca_features)


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    # Runs with or without h5py installed: the folder is checked first, then h5py is imported.
    for name in (
        "coco2014_captions.h5",
        "train2014_vgg16_fc7_pca.h5",
        "val2014_vgg16_fc7_pca.h5",
        "coco2014_vocab.json",
        "train2014_urls.txt",
        "val2014_urls.txt",
    ):
        (tmp_path / name).touch()
    real_import = builtins.__import__

    def no_h5py(name, *args, **kwargs):
        if name == "h5py":
            raise ImportError("No module named 'h5py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ImportError, match=r"pip install 'nn-twins\[coco\]'"):
        load_coco_data(base_dir=tmp_path)


def test_bad_contents_give_clear_errors(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)

    root = tmp_path / "no_idxs"
    write_coco_folder(root, rng)
    with h5py.File(root / "coco2014_captions.h5", "a") as f:
        del f["val_image_idxs"]
    with pytest.raises(ValueError, match=r"lacks the dataset\(s\) \['val_image_idxs'\]"):
        load_coco_data(base_dir=root)

    root = tmp_path / "bad_index"
    written = write_coco_folder(root, rng)
    with h5py.File(root / "coco2014_captions.h5", "a") as f:
        idxs = written["train_image_idxs"].copy()
        idxs[0] = 99
        f["train_image_idxs"][...] = idxs
    with pytest.raises(ValueError, match=r"train_image_idxs must index the 5 rows"):
        load_coco_data(base_dir=root)

    root = tmp_path / "bad_vocab"
    write_coco_folder(root, rng)
    (root / "coco2014_vocab.json").write_text(json.dumps({"idx_to_word": WORDS}))
    with pytest.raises(ValueError, match=r"'idx_to_word' and 'word_to_idx'"):
        load_coco_data(base_dir=root)

    root = tmp_path / "short_urls"
    write_coco_folder(root, rng)
    (root / "val2014_urls.txt").write_text("http://one\n")
    with pytest.raises(ValueError, match=r"val2014_urls\.txt has 1 lines"):
        load_coco_data(base_dir=root)

    root = tmp_path / "no_features"
    write_coco_folder(root, rng)
    with h5py.File(root / "train2014_vgg16_fc7_pca.h5", "w") as f:
        f.create_dataset("fc7", data=np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"lacks the dataset 'features'"):
        load_coco_data(base_dir=root)


def test_bad_arguments(coco):
    root, _ = coco
    with pytest.raises(ValueError, match="max_train"):
        load_coco_data(base_dir=root, max_train=0)
    data = load_coco_data(base_dir=root)
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'val'\), got 'test'"):
        sample_coco_minibatch(data, split="test")
    with pytest.raises(ValueError, match="batch_size"):
        sample_coco_minibatch(data, batch_size=0)
    with pytest.raises(KeyError, match="val_urls"):
        sample_coco_minibatch({k: v for k, v in data.items() if k != "val_urls"}, split="val")
    with pytest.raises(ValueError, match=r"word id 12, .*\(9 words\)"):
        decode_captions(np.array([[1, 12]]), WORDS)
    with pytest.raises(ValueError, match="word id -1"):
        decode_captions(np.array([1, -1]), WORDS)  # a list would wrap -1 to its last word
    with pytest.raises(TypeError, match="integer word ids"):
        decode_captions(np.array([[1.0, 2.0]]), WORDS)
    with pytest.raises(ValueError, match="captions must have 1 or 2 dimensions"):
        decode_captions(np.zeros((1, 2, 3), np.int64), WORDS)
