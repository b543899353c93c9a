"""The Keras tutorial CNN, the peer users reach for first, on one of imgclf's splits (not a test).

Runs in a Python that has TensorFlow: imgclf's own with `pip install -e '.[bench]'` (TensorFlow
stays out of the runtime and test installs), or a venv of its own:

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu pillow scikit-learn
    /tmp/tfvenv/bin/python bench/keras_cnn.py RUN/splits.csv --out keras.json

The recipe is TensorFlow's "Image classification" tutorial (tensorflow.org/tutorials/images/
classification) in its final form: 180x180 RGB, batches of 32, random flip, rotation 0.1 and zoom
0.1, rescaling to [0, 1], three conv 3x3 + max-pool blocks (16, 32, 64 filters), dropout 0.2,
dense 128, Adam, 15 epochs, the last epoch's weights. It trains on the split's train rows,
validates on its val rows as the tutorial does (nothing is chosen by them) and is scored on its test
rows. bench/budget.py's `keras` recipe runs it; wall seconds are the whole process, TensorFlow's
import included, as a user's script would pay.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import tables  # bench/tables.py (standard library only): the result also as CSV

T0 = time.perf_counter()

SIZE, BATCH, EPOCHS = 180, 32, 15


def dataset(rows, classes, shuffle: bool):
    import tensorflow as tf

    paths = [r["path"] for r in rows]
    labels = [classes.index(r["label"]) for r in rows]

    def load(path, label):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return tf.image.resize(img, (SIZE, SIZE)), label  # the tutorial's bilinear squash

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=0, reshuffle_each_iteration=True)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(BATCH).cache().prefetch(tf.data.AUTOTUNE)


def model(n_classes: int):
    from tensorflow import keras
    from tensorflow.keras import layers

    augment = keras.Sequential(
        [layers.RandomFlip("horizontal"), layers.RandomRotation(0.1), layers.RandomZoom(0.1)], name="augment"
    )
    net = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            augment,
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(n_classes),
        ]
    )
    net.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    return net


def data_root(splits: Path) -> Path:
    """What the rows' paths are relative to, as imgclf reads them: a run's splits.csv, the data root
    its model.json records; another manifest, its own folder."""
    meta = splits.with_name("model.json")
    if splits.name == "splits.csv" and meta.is_file():
        root = json.loads(meta.read_text()).get("data", {}).get("root")
        if isinstance(root, str) and Path(root).is_absolute():
            return Path(root)
    return splits.resolve().parent


def scores(truth: list, pred: list) -> dict:
    """Test accuracy and macro F1 of a peer's predictions, as bench/budget.py reads them."""
    from sklearn.metrics import f1_score

    return {
        "accuracy": sum(p == t for p, t in zip(pred, truth)) / len(truth),
        "macro_f1": float(f1_score(truth, pred, average="macro")),
    }


def write_result(out: str, result: dict) -> None:
    """The JSON bench/budget.py reads back (also printed)."""
    with open(out, "w") as f:
        json.dump(result, f)
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("splits", help="an imgclf run's splits.csv (path,label,split)")
    ap.add_argument("--out", required=True, help="where the JSON result is written")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    tables.add_csv_dir(ap)
    args = ap.parse_args()
    import numpy as np
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    rows = list(csv.DictReader(open(args.splits, newline="", encoding="utf-8")))
    base = data_root(Path(args.splits))
    for r in rows:
        r["path"] = str(base / r["path"])  # an absolute path stays as it is
    classes = sorted({r["label"] for r in rows})
    part = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    net = model(len(classes))
    t1 = time.perf_counter()
    net.fit(
        dataset(part["train"], classes, True),
        validation_data=dataset(part["val"], classes, False) if part["val"] else None,
        epochs=args.epochs,
        verbose=2,
    )
    train_s = time.perf_counter() - t1
    logits = net.predict(dataset(part["test"], classes, False), verbose=0)
    pred = np.argmax(logits, axis=1)
    truth = np.array([classes.index(r["label"]) for r in part["test"]])
    result = {
        **scores(truth.tolist(), pred.tolist()),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - T0, 1),
        "model": f"Keras tutorial CNN, {args.epochs} epochs",
        "size": SIZE,
        "tensorflow": tf.__version__,
    }
    tables.save("result", list(result), [list(result.values())])
    write_result(args.out, result)


if __name__ == "__main__":
    main()
