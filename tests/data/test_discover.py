"""Layouts, splits and data errors of imgclf.data.discover."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgclf.core.errors import UserError
from imgclf.data.discover import discover


def _img(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, value, value)).save(path)


def test_class_folders_stratified_split_and_unicode_names(tmp_path):
    for cls, n in (("zebra crossing", 50), ("Ångström", 20), ("cat", 10)):
        for i in range(n):
            _img(tmp_path / cls / f"{i}.png")
    (tmp_path / "README.md").write_text("not an image")
    (tmp_path / "cat" / "notes.txt").write_text("x")
    spec = discover(tmp_path, 0.1, 0.1, seed=0)
    assert spec.classes == sorted(["zebra crossing", "Ångström", "cat"])
    assert len(spec.paths) == 80
    assert any(p.endswith("README.md") for p in spec.ignored) and any(p.endswith("notes.txt") for p in spec.ignored)
    for c, n in {"cat": 10, "Ångström": 20, "zebra crossing": 50}.items():
        counts = {
            s: int(((spec.labels == spec.classes.index(c)) & (spec.splits == s)).sum())
            for s in ("train", "val", "test")
        }
        assert counts["test"] == round(n * 0.1) and counts["val"] == round(n * 0.1)
        assert sum(counts.values()) == n
    again = discover(tmp_path, 0.1, 0.1, seed=0)
    assert (again.splits == spec.splits).all()
    other = discover(tmp_path, 0.1, 0.1, seed=1)
    assert (other.splits != spec.splits).any()


def test_classes_that_differ_only_as_a_plural_are_said(tmp_path):
    """rose/ and roses/ (two sources merged): likely one class split in two, each image of either
    confused over; said in the note training and check print. Numbered classes (s1, s10) are not."""
    for cls in ("rose", "roses", "Daisies", "daisy", "tulip"):
        for i in range(5):
            _img(tmp_path / "flowers" / cls / f"{i}.png")
    note = discover(tmp_path / "flowers").note
    assert "classes Daisies/daisy, rose/roses differ only as a plural: if each pair is one class, merge" in note
    for cls in ("s1", "s10", "s2"):
        for i in range(5):
            _img(tmp_path / "faces" / cls / f"{i}.png")
    assert "plural" not in (discover(tmp_path / "faces").note or "")


def test_split_folders_carve_val_from_train(tmp_path):
    for split, n in (("train", 20), ("test", 5)):
        for cls in ("a", "b"):
            for i in range(n):
                _img(tmp_path / split / cls / f"{i}.jpg")
    spec = discover(tmp_path, 0.2, 0.1)
    assert spec.layout == "split-folders"
    assert (spec.splits == "test").sum() == 10  # the user's test split is kept as is
    assert (spec.splits == "val").sum() == 8  # 20% of each class's train images
    assert (spec.splits == "train").sum() == 32


def test_a_val_folder_without_test_is_the_test_split(tmp_path):
    """train/ + val/ (Ultralytics' and the Keras tutorials' layout): val/ is scored once, as the test
    split, and validation is carved from train/, not the test from train/ (which reported on 2 of
    train's images and never on the user's own held-out folder)."""
    for split, n in (("train", 20), ("val", 5)):
        for cls in ("a", "b"):
            for i in range(n):
                _img(tmp_path / split / cls / f"{i}.jpg", value=10 * i)
    spec = discover(tmp_path, 0.1, 0.1)
    tested = {Path(p).relative_to(tmp_path).parts[0] for p, s in zip(spec.paths, spec.splits) if s == "test"}
    assert tested == {"val"} and (spec.splits == "test").sum() == 10
    assert (spec.splits == "val").sum() == 4 and (spec.splits == "train").sum() == 36
    assert "your val split is the test split" in spec.note
    assert (spec.given == "test").sum() == 10  # a class missing from it is "the test split you gave"
    # train/ + val/ + test/: all three kept as given, nothing said.
    for cls in ("a", "b"):
        _img(tmp_path / "test" / cls / "0.jpg")
    spec = discover(tmp_path, 0.1, 0.1)
    assert [(spec.splits == s).sum() for s in ("train", "val", "test")] == [40, 10, 2] and spec.note == ""


def test_manifest(tmp_path):
    rows = ["path,label,split"]
    for i in range(12):
        _img(tmp_path / "imgs" / f"{i}.png")
        rows.append(f"imgs/{i}.png,{'yes' if i % 2 else 'no'},{'test' if i < 2 else ''}")
    (tmp_path / "m.csv").write_text("\n".join(rows))
    spec = discover(tmp_path / "m.csv")
    assert spec.classes == ["no", "yes"] and spec.layout == "manifest"
    assert (spec.splits == "test").sum() == 2


def test_a_csv_saved_by_a_european_excel_on_windows(tmp_path):
    """Semicolons (the comma is the decimal mark there), a byte-order mark, CRLF line ends, headers
    with spaces and backslashes in the paths: read as the comma-separated CSV would be."""
    rows = ["File Name;Class Name"]
    for i in range(6):
        _img(tmp_path / "imgs" / f"{i}.png")
        rows.append(f"imgs\\{i}.png;{'yes' if i % 2 else 'no'}")
    (tmp_path / "m.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode() + b"\r\n")
    spec = discover(tmp_path / "m.csv")
    assert spec.classes == ["no", "yes"] and spec.paths[1] == str(tmp_path / "imgs" / "1.png")
    assert spec.labels.tolist() == [0, 1, 0, 1, 0, 1] and "column 'File Name'" in spec.note
    for tabbed in ("path\tlabel", "path|label"):
        sep = tabbed[4]
        (tmp_path / "t.csv").write_text("\n".join([tabbed] + [f"imgs/{i}.png{sep}{i % 3}" for i in range(6)]))
        assert discover(tmp_path / "t.csv").classes == ["0", "1", "2"]


def test_kaggle_style_csv_beside_a_folder_of_images(tmp_path):
    """A folder holding train/ (images, no class folders) and labels.csv naming each by its id and
    breed, as Kaggle sets come: `imgclf train FOLDER` and `imgclf train FOLDER/labels.csv` read it."""
    rows = ["id,breed"]
    for i in range(12):
        _img(tmp_path / "train" / f"{i:04d}.jpg", value=20 * i)
        rows.append(f"{i:04d},{'husky' if i % 2 else 'pug'}")
    rows += ["0012,", "9999,pug"]  # no label yet; a listed file that is not there
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    _img(tmp_path / "test" / "0100.jpg")  # unlabelled test photos sit beside, as on Kaggle
    for source in (tmp_path, tmp_path / "labels.csv"):
        spec = discover(source)
        assert spec.layout == "manifest" and spec.classes == ["husky", "pug"]
        assert spec.paths[:2] == [str(tmp_path / "train" / "0000.jpg"), str(tmp_path / "train" / "0001.jpg")]
        assert spec.labels[:2].tolist() == [1, 0] and len(spec.paths) == 13
        assert spec.note.endswith(
            "labels.csv: images from column 'id', classes from column 'breed'; 1 listed image(s) not found; "
            "1 row(s) without a label left out"
        )


def test_kaggle_labels_beside_a_submission_template(tmp_path):
    """Kaggle's folder as downloaded: labels.csv (or train.csv) beside sample_submission.csv, whose
    label column holds dummies, and test.csv listing the photos to answer. With two CSVs or more the
    folder read as "0 classes"; now the labels are taken and the others named."""
    rows = ["image_id,label"]
    for i in range(8):
        _img(tmp_path / "train_images" / f"{i}.jpg", value=25 * i)
        rows.append(f"{i}.jpg,{'healthy' if i % 2 else 'rust'}")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "sample_submission.csv").write_text("image_id,label\n100.jpg,4\n")
    (tmp_path / "test.csv").write_text("image_id\n100.jpg\n")
    spec = discover(tmp_path)
    assert spec.classes == ["healthy", "rust"] and len(spec.paths) == 8
    assert "sample_submission.csv, test.csv left out (not the labels)" in spec.note
    (tmp_path / "train.csv").rename(tmp_path / "labels.csv")  # no "train" in any name: "label" decides
    assert discover(tmp_path).classes == ["healthy", "rust"]
    (tmp_path / "extra.csv").write_text("image_id,label\n0.jpg,rust\n")
    (tmp_path / "labels.csv").rename(tmp_path / "meta.csv")  # nothing tells them apart: ask, naming them
    with pytest.raises(UserError, match=r"holds 4 CSV files \(extra.csv, meta.csv, sample_submission.csv, test.csv\) "):
        discover(tmp_path)


def test_a_csv_of_one_hot_class_columns(tmp_path):
    """Kaggle's `image_id,healthy,multiple_diseases,rust,scab`: a 1 under each image's class. A row with
    several 1s (multi-label) or none is left out and counted; a 0/1 label column stays a label column."""
    rows = ["image_id,healthy,rust,scab"]
    for i in range(12):
        _img(tmp_path / "images" / f"Train_{i}.jpg", value=20 * i)
        rows.append(f"Train_{i}," + ",".join("1.0" if i % 3 == k else "0.0" for k in range(3)))
    rows += ["Train_12,1,1,0", "Train_13,0,0,0"]
    _img(tmp_path / "images" / "Train_12.jpg")
    _img(tmp_path / "images" / "Train_13.jpg")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    spec = discover(tmp_path)
    assert spec.layout == "manifest" and spec.classes == ["healthy", "rust", "scab"] and len(spec.paths) == 12
    assert spec.labels.tolist() == [i % 3 for i in range(12)]
    assert spec.paths[1] == str(tmp_path / "images" / "Train_1.jpg")
    assert spec.note == (
        "train.csv: images from column 'image_id', classes from the one-hot columns 'healthy', 'rust', 'scab'; "
        "1 row(s) with several classes left out (imgclf trains one class an image); 1 row(s) without a label left out"
    )
    binary = ["path,label"] + [f"images/Train_{i}.jpg,{i % 2}" for i in range(12)]
    (tmp_path / "train.csv").write_text("\n".join(binary) + "\n")
    assert discover(tmp_path).classes == ["0", "1"]


def test_a_zips_extra_folder_level_is_stepped_into(tmp_path):
    """photos.zip unpacked as photos/archive/flowers/<class>/ (with __MACOSX and a README beside):
    the classes are the folders where the data is, and the note says where that was."""
    inner = tmp_path / "photos" / "archive" / "flowers"
    for cls in ("daisy", "rose"):
        for i in range(5):
            _img(inner / cls / f"{i}.jpg", value=40 * i)
    (tmp_path / "photos" / "__MACOSX" / "archive").mkdir(parents=True)
    (tmp_path / "photos" / "README.txt").write_text("from Kaggle")
    spec = discover(tmp_path / "photos")
    assert spec.classes == ["daisy", "rose"] and spec.root == str(inner) and len(spec.paths) == 10
    assert spec.note == "read from archive/flowers/, the one folder inside photos/"
    _img(tmp_path / "one" / "cat" / "2024" / "a.jpg")  # one class, nested by year: not mistaken for classes
    with pytest.raises(UserError, match="found 1 class"):
        discover(tmp_path / "one")


def test_split_folders_as_kaggle_names_them(tmp_path):
    """training_set/training_set/<class>/ and test_set/test_set/<class>/ (Kaggle's cats and dogs):
    two splits of two classes, not two classes named after the splits."""
    for split, n in (("training_set", 8), ("test_set", 3)):
        for cls in ("cats", "dogs"):
            for i in range(n):
                _img(tmp_path / split / split / cls / f"{cls}.{i}.jpg", value=30 * i)
    spec = discover(tmp_path, 0.25, 0.1)
    assert spec.layout == "split-folders" and spec.classes == ["cats", "dogs"]
    assert (spec.splits == "test").sum() == 6 and (spec.splits == "val").sum() == 4


def test_classes_from_file_names_in_a_flat_folder(tmp_path):
    """Oxford pets' images/Abyssinian_12.jpg and Kaggle's train/cat.0.jpg beside an unlabelled
    test1/1.jpg: the class is the name before the number. A camera's IMG_0001.jpg is no class."""
    for i in range(4):
        for breed in ("Abyssinian", "great_pyrenees"):
            _img(tmp_path / "pets" / f"{breed}_{i + 1}.jpg", value=50 * i)
        for animal in ("cat", "dog"):
            _img(tmp_path / "kaggle" / "train" / f"{animal}.{i}.jpg", value=50 * i)
        _img(tmp_path / "kaggle" / "test1" / f"{i + 1}.jpg")
        _img(tmp_path / "camera" / f"IMG_{i:04d}.jpg")
    pets = discover(tmp_path / "pets")
    assert pets.layout == "file-names" and pets.classes == ["Abyssinian", "great_pyrenees"]
    assert pets.note == "classes from file names, the name before the number (Abyssinian_1.jpg: Abyssinian)"
    assert np.bincount(pets.labels).tolist() == [4, 4] and set(pets.splits) <= {"train", "val", "test"}
    kaggle = discover(tmp_path / "kaggle", 0.25, 0.25)
    assert kaggle.classes == ["cat", "dog"] and len(kaggle.paths) == 8
    assert kaggle.note.startswith("test1/ holds no class folders: left out as unlabelled; classes from file names")
    assert (kaggle.splits == "test").sum() == 2  # test1/ holds no labels: test is carved from train
    with pytest.raises(UserError, match="found 0 class"):
        discover(tmp_path / "camera")


def test_oxford_pets_as_unpacked_is_read_from_its_images_not_as_two_classes(tmp_path, monkeypatch):
    """images/Abyssinian_12.jpg beside annotations/ (trimaps/*.png, a list): read as two classes,
    "annotations" and "images", before; a zip of images/ alone as one class, "images"."""
    import shutil

    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(4):
        for breed in ("Abyssinian", "great_pyrenees"):
            _img(tmp_path / "pets" / "images" / f"{breed}_{i + 1}.jpg", value=50 * i)
            _img(tmp_path / "pets" / "annotations" / "trimaps" / f"{breed}_{i + 1}.png", value=1)
    (tmp_path / "pets" / "annotations" / "list.txt").write_text("Abyssinian_1 1 1 1\n")
    pets = discover(tmp_path / "pets")
    assert pets.classes == ["Abyssinian", "great_pyrenees"] and len(pets.paths) == 8
    assert pets.note.startswith("read from images/; annotations/ beside it left out (annotations)")
    zipped = Path(shutil.make_archive(str(tmp_path / "images"), "zip", tmp_path / "pets", "images"))
    assert discover(zipped).classes == ["Abyssinian", "great_pyrenees"]
    (tmp_path / "pets" / "cats").mkdir()  # a third folder, a class of its own: read as class folders
    _img(tmp_path / "pets" / "cats" / "a.jpg")
    assert "images" in discover(tmp_path / "pets").classes


def test_kaggles_download_unzipped_once_reads_its_training_archive(tmp_path, monkeypatch):
    """dogs-vs-cats.zip unzipped: train.zip (cat.0.jpg, dog.0.jpg ...) and test1.zip beside
    sampleSubmission.csv. The template was read as the labels ("none of the 5 images named in column
    'id' were found"); now train.zip is unpacked and read, and test1.zip is named as left out."""
    import shutil

    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(4):
        for animal in ("cat", "dog"):
            _img(tmp_path / "src" / "train" / f"{animal}.{i}.jpg", value=30 * i + (100 if animal == "dog" else 0))
        _img(tmp_path / "src" / "test1" / f"{i + 1}.jpg")
    kaggle = tmp_path / "dogs-vs-cats"
    kaggle.mkdir()
    for name in ("train", "test1"):
        shutil.make_archive(str(kaggle / name), "zip", tmp_path / "src", name)
    (kaggle / "sampleSubmission.CSV").write_text("id,label\n1,0\n2,0\n")  # any case
    spec = discover(kaggle)
    assert spec.classes == ["cat", "dog"] and len(spec.paths) == 8
    assert "test1.zip left out (only train.zip is read)" in spec.note
    shutil.copy(kaggle / "train.zip", kaggle / "train_extra.zip")  # two "train" archives: ask, naming them
    with pytest.raises(UserError, match=r"holds 3 archives \(test1.zip, train.zip, train_extra.zip\) and no images"):
        discover(kaggle)
    (kaggle / "train_extra.zip").unlink()
    (kaggle / "train.csv").write_text("id,label\ncat.0.jpg,cat\n")  # labels beside: the folder is read as it is
    with pytest.raises(UserError, match="were found .*; test1.zip, train.zip beside it: unpack it there first"):
        discover(kaggle)


def test_a_downloaded_archive_is_unpacked_once_and_read_like_its_folder(tmp_path, monkeypatch):
    import shutil
    import zipfile

    monkeypatch.setenv("IMGCLF_CACHE_DIR", str(tmp_path / "cache"))
    for cls in ("daisy", "rose"):
        for i in range(5):
            _img(tmp_path / "src" / "flowers" / cls / f"{i}.jpg", value=40 * i)
    (tmp_path / "src" / "__MACOSX").mkdir()
    zipped = Path(shutil.make_archive(str(tmp_path / "flowers"), "zip", tmp_path / "src"))
    spec = discover(zipped)
    assert spec.classes == ["daisy", "rose"] and len(spec.paths) == 10
    unpacked = next((tmp_path / "cache" / "unpacked").iterdir())
    assert spec.root == str(unpacked / "flowers")
    assert spec.note == f"flowers.zip unpacked to {unpacked}; read from flowers/ inside it"
    assert discover(zipped).note.startswith("flowers.zip unpacked before")  # once
    tarred = Path(shutil.make_archive(str(tmp_path / "flowers"), "gztar", tmp_path / "src" / "flowers"))
    assert discover(tarred).classes == ["daisy", "rose"]

    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as z:
        z.writestr("a/1.jpg", b"x")
        z.writestr("../../outside.jpg", b"x")
    with pytest.raises(UserError, match="would unpack outside its folder: ../../outside.jpg"):
        discover(tmp_path / "evil.zip")
    (tmp_path / "cut.zip").write_bytes(zipped.read_bytes()[:-200])  # a download cut short
    with pytest.raises(UserError, match="cut.zip.*is it a whole, uncorrupted archive"):
        discover(tmp_path / "cut.zip")
    assert not list((tmp_path / "cache" / "unpacked").glob(".unpacking-*"))  # nothing half-unpacked left


def test_class_folders_beside_a_test_folder(tmp_path):
    """DATA/<class>/ beside DATA/test/<class>/: the classes train, test/ is the test split (not a
    class named "test"). Beside a flat test/, test/ may be a class (control/ and test/) or photos
    to predict: it stays a class, and the note says so. Kaggle's train/<class>/ beside a flat test/
    of unlabelled photos: test/ is left out."""
    for cls in ("cat", "dog"):
        for i in range(6):
            _img(tmp_path / "a" / cls / f"{i}.jpg", value=30 * i)
            _img(tmp_path / "b" / cls / f"{i}.jpg", value=30 * i)
        for i in range(2):
            _img(tmp_path / "a" / "test" / cls / f"t{i}.jpg")
    _img(tmp_path / "b" / "test" / "x.jpg")
    a = discover(tmp_path / "a", 0.2, 0.1)
    assert a.layout == "split-folders" and a.classes == ["cat", "dog"] and len(a.paths) == 16
    assert [Path(p).name for p in np.array(a.paths)[a.splits == "test"]] == ["t0.jpg", "t1.jpg"] * 2
    b = discover(tmp_path / "b")
    assert b.classes == ["cat", "dog", "test"] and len(b.paths) == 13
    assert b.note == "test/ is read as a class; if it holds unlabelled photos, move it out of the data"
    _img(tmp_path / "b" / "Dev" / "x.jpg")  # a person named Dev is a class, not a validation split to explain
    assert "Dev" in discover(tmp_path / "b").classes and "Dev/" not in discover(tmp_path / "b").note
    for cls in ("cat", "dog"):
        for i in range(3):
            _img(tmp_path / "k" / "train" / cls / f"{i}.jpg")
    _img(tmp_path / "k" / "test" / "x.jpg")
    k = discover(tmp_path / "k")
    assert k.classes == ["cat", "dog"] and k.note == "test/ holds no class folders: left out as unlabelled"
    for cls in ("bus", "car", "train"):  # vehicles: a class named "train" is a class, not a split
        for i in range(3):
            _img(tmp_path / "c" / cls / f"{i}.jpg")
    assert discover(tmp_path / "c").classes == ["bus", "car", "train"]


def test_file_names_that_are_not_utf8_are_left_out_and_said(tmp_path):
    """A zip made on an old Windows and unpacked by `unzip` leaves names in cp1252 bytes: such a
    file cannot go into splits.csv or a terminal, so it is left out with a note, not a traceback."""
    import os

    from imgclf.inference.batch import csv_row

    for cls in ("a", "b"):
        for i in range(4):
            _img(tmp_path / "d" / cls / f"{i}.jpg")
    try:
        os.rename(os.fsencode(tmp_path / "d" / "a" / "0.jpg"), os.fsencode(tmp_path / "d" / "a") + b"/caf\xe9.jpg")
    except OSError:
        pytest.skip("this file system takes UTF-8 names only")
    spec = discover(tmp_path / "d")
    assert len(spec.paths) == 7 and spec.unnamable == [str(tmp_path / "d" / "a" / "caf\\udce9.jpg")]
    assert spec.ignored == []  # an image all the same: not counted with the notes and PDFs
    assert spec.note == "1 file(s) left out: their names are not valid UTF-8, e.g. 'caf\\udce9.jpg'; rename them"
    from imgclf.data.doctor import diagnose
    from imgclf.data.doctor_report import _rows

    found = diagnose(spec, progress=False)
    assert found["summary"]["unnamable"] == 1 and found["summary"]["ignored"] == 0
    table = {what: (count, examples) for what, count, examples, _ in _rows(found, spec.root)}
    assert table["left out (name not UTF-8)"] == ("1", ["a/caf\\udce9.jpg"]) and table["ignored (not images)"][0] == "0"
    assert csv_row({"path": "caf\udce9.jpg", "label": "a", "confidence": 1.0})[0] == "caf\\udce9.jpg"
    os.rename(os.fsencode(tmp_path / "d" / "b"), os.fsencode(tmp_path / "d") + b"/\xe9t\xe9")
    with pytest.raises(UserError, match=r"class folder '\\udce9t\\udce9' has a name that is not valid UTF-8"):
        discover(tmp_path / "d")


def test_csv_columns_by_name_or_position_and_errors(tmp_path):
    for i in range(6):
        _img(tmp_path / "photos" / f"{i}.png")
    (tmp_path / "a.csv").write_text("Image,Class\n" + "".join(f"photos/{i}.png,c{i % 2}\n" for i in range(6)))
    assert discover(tmp_path / "a.csv").note == "a.csv: images from column 'Image', classes from column 'Class'"
    (tmp_path / "b.csv").write_text("where,what\n" + "".join(f"{i}.png,c{i % 2}\n" for i in range(6)))
    spec = discover(tmp_path / "b.csv")  # two unknown columns: the image, then its class; bare file names
    assert spec.classes == ["c0", "c1"] and spec.paths[0] == str(tmp_path / "photos" / "0.png")
    (tmp_path / "c.csv").write_text("x,y,z\n1,2,3\n")
    with pytest.raises(UserError, match="cannot tell which column names the image.*'x', 'y', 'z'"):
        discover(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("path,label\nnope/1.png,a\nnope/2.png,b\n")
    with pytest.raises(UserError, match="none of the 2 images named in column 'path'.*'nope/1.png'"):
        discover(tmp_path / "d.csv")


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="not found"):
        discover(tmp_path / "nope")
    _img(tmp_path / "only" / "a.png")
    with pytest.raises(UserError, match="at least 2"):
        discover(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="'empty' has no images"):
        discover(tmp_path)


def test_symlinked_folders_are_followed_once(tmp_path):
    """Datasets assembled from links: linked class folders and linked sub-folders both count,
    and a link loop does not recurse forever."""
    from PIL import Image

    from imgclf.data.discover import discover
    from imgclf.data.spec import files_under

    real = tmp_path / "real"
    for cls in ("a", "b"):
        (real / cls / "inner").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(real / cls / "inner" / f"{i}.png")
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "linked").symlink_to(real / "a" / "inner", target_is_directory=True)
    (data / "a" / "loop").symlink_to(data / "a", target_is_directory=True)
    (data / "b").symlink_to(real / "b", target_is_directory=True)
    spec = discover(data)
    assert sorted(spec.classes) == ["a", "b"] and len(spec.paths) == 6
    assert len(files_under(data / "a")) == 3
    # A link to a photo that has moved is listed, then skipped and said; a broken link to notes is not.
    (data / "a" / "moved.png").symlink_to(tmp_path / "gone" / "moved.png")
    (data / "a" / "notes.txt").symlink_to(tmp_path / "gone" / "notes.txt")
    assert [p.name for p in files_under(data / "a")] == ["0.png", "1.png", "2.png", "moved.png"]
    from imgclf.data.images import UnusableImage, load_resized

    with pytest.raises(UnusableImage, match=r"^a broken link: .*gone/moved.png does not exist$"):
        load_resized(data / "a" / "moved.png", 8)


def test_a_runs_splits_csv_reads_against_its_recorded_data_root(tmp_path, monkeypatch):
    """A run's splits.csv holds paths relative to the data root model.json records: given as a
    manifest (to train again on the same split) it reads them there, from any working folder."""
    import json

    data, run = tmp_path / "photos", tmp_path / "runs" / "r1"
    for cls in ("cat", "dog"):
        (data / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(data / cls / f"{i}.png")
    run.mkdir(parents=True)
    (run / "model.json").write_text(json.dumps({"data": {"root": str(data)}}))
    rows = ["path,label,split"] + [
        f"{c}/{i}.png,{c},{s}" for c in ("cat", "dog") for i, s in enumerate(("train", "val", "test"))
    ]
    (run / "splits.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.chdir(tmp_path / "runs")
    spec = discover(run / "splits.csv")
    assert spec.paths[0] == str(data / "cat" / "0.png") and list(spec.splits[:3]) == ["train", "val", "test"]
    (run / "other.csv").write_text("\n".join(rows) + "\n")  # any other manifest: its own folder
    _img(run / "cat" / "0.png")
    assert discover(run / "other.csv").paths[0] == str(run / "cat" / "0.png")


def test_phone_photos_without_their_decoder_are_named_with_the_fix(tmp_path, monkeypatch, capsys):
    """Where pillow-heif is not installed, an iPhone's .heic photos are not images to discover: a
    class of them only is one line naming the install, and training says how many it left out."""
    from imgclf.data import discover as disc
    from imgclf.data import spec as dataset
    from imgclf.data.formats import BASE_EXTENSIONS
    from imgclf.training.prepare import decode

    monkeypatch.setattr(disc, "IMAGE_EXTENSIONS", BASE_EXTENSIONS)
    monkeypatch.setattr(dataset, "IMAGE_EXTENSIONS", BASE_EXTENSIONS)
    monkeypatch.setattr(disc, "NEEDS_DECODER", {".heic": "pip install 'imgclf[heic]'"})
    for i in range(4):
        _img(tmp_path / "cat" / f"{i}.png")
        (tmp_path / "phone" / f"IMG_{i}.HEIC").parent.mkdir(exist_ok=True)
        (tmp_path / "phone" / f"IMG_{i}.HEIC").write_bytes(b"heic")
    with pytest.raises(UserError) as e:
        discover(tmp_path)
    assert str(e.value) == (
        "class folder 'phone' holds only photos this install cannot read: 4 .heic file(s), which need "
        "pip install 'imgclf[heic]'"
    )
    assert disc.undecodable([str(tmp_path / "a.txt"), str(tmp_path / "b.heic")]) == (
        "1 .heic file(s), which need pip install 'imgclf[heic]'"
    )
    for i in range(4):
        _img(tmp_path / "phone" / f"{i}.png", 30)
    spec = discover(tmp_path, 0.25, 0.0)
    assert len(spec.paths) == 8 and sum(p.endswith(".HEIC") for p in spec.ignored) == 4

    from rich.console import Console

    from imgclf.settings.config import TrainConfig

    decode(spec, TrainConfig(img_size=16, workers=1), Console(force_terminal=False, width=200))
    assert "warning: left out 4 .heic file(s), which need pip install 'imgclf[heic]'" in capsys.readouterr().out
    # predict (and scan, explain) on the folder: listed, so each is answered with what to install.
    from imgclf.inference.predictor import expand_inputs

    listed = [Path(p).name for p in expand_inputs(tmp_path / "phone")]
    assert sorted(listed) == [
        "0.png",
        "1.png",
        "2.png",
        "3.png",
        "IMG_0.HEIC",
        "IMG_1.HEIC",
        "IMG_2.HEIC",
        "IMG_3.HEIC",
    ]


def test_camera_raw_files_are_named_not_read_for_their_preview(tmp_path):
    """A camera's RAW files (DNG, CR2, NEF, ... are TIFF-like: Pillow would open the small preview some
    hold) are never images: a class of them only is one line saying to export them, and a path given
    to predict is answered with the same, even when its bytes are a readable TIFF."""
    from imgclf.data.images import UnusableImage, load_resized

    for i in range(4):
        _img(tmp_path / "cat" / f"{i}.png")
        _img(tmp_path / "studio" / f"IMG_{i}.png")
        Image.new("RGB", (8, 8), "red").save(tmp_path / "studio" / f"IMG_{i}.CR2", format="TIFF")
    spec = discover(tmp_path, 0.25, 0.0)
    assert len(spec.paths) == 8 and sum(p.endswith(".CR2") for p in spec.ignored) == 4
    with pytest.raises(
        UnusableImage, match=r"^camera RAW \(CR2\), which imgclf does not read: export it as JPEG or PNG$"
    ):
        load_resized(tmp_path / "studio" / "IMG_0.CR2", 8)
    for i in range(4):
        (tmp_path / "studio" / f"IMG_{i}.png").unlink()
    with pytest.raises(UserError) as e:
        discover(tmp_path)
    assert str(e.value) == (
        "class folder 'studio' holds only photos this install cannot read: 4 .cr2 file(s), which need "
        "a JPEG or PNG export (camera RAW is not read)"
    )


def test_class_folders_that_hold_folders_are_said_to_be_the_classes(tmp_path):
    for inner in ("mammals/cat", "mammals/dog", "birds/eagle", "birds/owl"):
        for i in range(3):
            _img(tmp_path / "nested" / inner / f"{i}.png")
    spec = discover(tmp_path / "nested")
    assert spec.classes == ["birds", "mammals"] and len(spec.paths) == 12
    assert spec.note.startswith("the 2 classes are the top folders; the 4 folders inside them (eagle, owl, cat, dog)")
    # One class of the hierarchy with a single kind in it: still the inner folders that look like classes.
    shutil.rmtree(tmp_path / "nested" / "birds" / "owl")
    assert discover(tmp_path / "nested").note.startswith("the 2 classes are the top folders; the 3 folders")
    # A class that keeps images of its own, or one folder in each class, is the plain layout: nothing to say.
    for i in range(3):
        _img(tmp_path / "nested" / "birds" / f"{i}.png")
    assert discover(tmp_path / "nested").note == ""
    for inner in ("cat/images", "dog/images"):
        for i in range(3):
            _img(tmp_path / "plain" / inner / f"{i}.png")
    assert discover(tmp_path / "plain").note == ""


def test_a_class_with_no_test_photo_is_named_before_training(tmp_path):
    """One photo of a class: it trains, and the warning says the test numbers leave it out, with the
    fix that fits the split (more photos; or the test folder the user gave)."""
    from rich.console import Console

    from imgclf.training.prepare import untested

    for cls, n in (("rare", 1), ("common", 20), ("other", 20)):
        for i in range(n):
            _img(tmp_path / "made" / cls / f"{i}.png", 10 * i)
    console = Console(record=True, width=400)
    untested(discover(tmp_path / "made"), console)
    assert console.export_text().strip() == (
        "warning: no test image of 'rare': the model learns it, but the test numbers say nothing of it; "
        "add photos (3 or more a class give one to test)"
    )
    for split, cls, n in (("train", "a", 5), ("train", "b", 5), ("test", "a", 2)):
        for i in range(n):
            _img(tmp_path / "given" / split / cls / f"{i}.png", 10 * i)
    console = Console(record=True, width=400)
    untested(discover(tmp_path / "given"), console)
    text = console.export_text()
    assert "no test image of 'b'" in text and text.rstrip().endswith("add photos of it to the test split you gave")
    console = Console(record=True, width=400)
    untested(discover(tmp_path / "made", 0.1, 0.0), console)  # no test split at all: nothing to say
    assert console.export_text() == ""


def test_imgclf_output_inside_the_data_folder_is_neither_a_class_nor_a_photo(tmp_path):
    """`imgclf train .` run twice inside the photos' folder: the first run's ./runs/ (its plots are
    PNGs), a tune folder's trials, a registry and a feedback inbox are imgclf's own output. The
    second run read ./runs/ as a third class of confusion matrices."""
    from imgclf.data.discover import files_to_predict
    from tests.helpers import make_run

    for cls in ("cat", "dog"):
        for i in range(6):
            _img(tmp_path / cls / f"{i}.png", 40 * i)
    run = make_run(tmp_path, "data-1", 0.9, [])
    _img(run / "confusion_matrix.png")
    trial = tmp_path / "tunes" / "data-1" / "trials" / "0"
    _img(trial / "learning_curves.png")
    (trial / "splits.csv").write_text("path,label,split\n")
    (trial / "data_report.json").write_text("{}")
    (tmp_path / "tunes" / "data-1" / "tune.json").write_text("{}")
    (tmp_path / "tunes" / "data-2").mkdir()  # made, then interrupted before its first trial
    (tmp_path / "tunes" / "data-3").mkdir()  # `imgclf tune .` as it reads the data for its first trial
    for f in ("tune.json", "study.journal"):
        (tmp_path / "tunes" / "data-3" / f).write_text("{}")
    (tmp_path / "runs" / "data-2").mkdir()  # the run a tune retrains its best trial into, as it starts
    (tmp_path / "runs" / "data-2" / "tuning.json").write_text("{}")
    (tmp_path / "runs" / "both" / "members" / "0-data-1").mkdir(parents=True)  # imgclf ensemble ... --out
    (tmp_path / "runs" / "both" / "model.json").write_text("{}")
    _img(tmp_path / "explanations" / "0-gradcam-cat.png")  # imgclf explain, its default --out
    (tmp_path / "explanations" / "explain.json").write_text("{}")
    _img(tmp_path / "monitors" / "data-1" / "to_label" / "1.png")  # imgclf monitor, its default --out
    (tmp_path / "monitors" / "data-1" / "monitor.json").write_text("{}")
    _img(tmp_path / "served" / "images" / "ab" / "ab12.png")  # imgclf serve ... --log-predictions served
    (tmp_path / "served" / "predictions.jsonl").write_text("")
    _img(tmp_path / "staff" / "photos" / "ann" / "0.png")  # imgclf faces enrol ... --out staff --keep-photos
    (tmp_path / "staff" / "gallery.safetensors").write_bytes(b"")
    (tmp_path / "registry" / "versions" / "1").mkdir(parents=True)
    (tmp_path / "registry" / "aliases.json").write_text("{}")
    _img(tmp_path / "registry" / "inbox" / "cat" / "sent.png")
    (tmp_path / "registry" / "inbox" / "feedback.jsonl").write_text("")
    _img(tmp_path / "inbox" / "dog" / "sent.png")
    (tmp_path / "inbox" / "feedback.jsonl").write_text("")
    _img(tmp_path / "scanned" / "annotated" / "0.jpg")  # imgclf scan dog/ --out scanned
    (tmp_path / "scanned" / "scan.json").write_text("{}")
    _img(tmp_path / "dog" / "faces" / "annotated" / "0.jpg")  # imgclf faces identify ... --out dog/faces
    (tmp_path / "dog" / "faces" / "faces.json").write_text("{}")

    spec = discover(tmp_path)
    assert spec.classes == ["cat", "dog"] and len(spec.paths) == 12
    assert (
        "explanations/, inbox/, monitors/, registry/, runs/, scanned/, served/, staff/, tunes/: imgclf's own output, "
        "not read as data" in spec.note
    )
    made = {"runs", "tunes", "annotated", "explanations", "monitors", "staff"}
    assert not [p for p in files_to_predict(tmp_path) if made & set(Path(p).parts)]

    # A folder with a photo of its own is the user's, still a class; the run inside it is still not photos.
    _img(tmp_path / "runs" / "stray.png")
    spec = discover(tmp_path)
    assert spec.classes == ["cat", "dog", "runs"]
    assert [Path(p).name for p, label in zip(spec.paths, spec.labels) if label == 2] == ["stray.png"]


def test_split_folders_inside_each_class_are_the_split(tmp_path):
    """daisy/train/, daisy/test/ (the split folders inside the classes, as some downloads come): the
    user's split is kept, a validation split carved from train; a class without train/ is one line."""
    for cls in ("daisy", "rose"):
        for split, n in (("train", 20), ("test", 5)):
            for i in range(n):
                _img(tmp_path / cls / split / f"{i}.png", 10 * i)
    spec = discover(tmp_path)
    assert spec.classes == ["daisy", "rose"] and spec.layout == "split-folders"
    for p, s in zip(spec.paths, spec.splits):
        assert (s == "test") == (Path(p).parent.name == "test"), (p, s)
    assert sorted(spec.splits).count("test") == 10 and "val" in set(spec.splits)
    assert "the split from the folders inside each class" in spec.note

    # Folders inside the classes that are not splits (years, sources) stay part of their class.
    (tmp_path / "rose" / "test").rename(tmp_path / "rose" / "2024")
    spec = discover(tmp_path)
    assert spec.layout == "folders" and "read as part of their class" in spec.note
    (tmp_path / "rose" / "2024").rename(tmp_path / "rose" / "test")
    (tmp_path / "rose" / "train").rename(tmp_path / "rose" / "val")
    with pytest.raises(UserError, match="class\\(es\\) 'rose' have no training images"):
        discover(tmp_path)
