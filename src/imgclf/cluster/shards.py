"""One shard's work on a Ray Data worker: predict its paths with imgclf's decoder, `predict_proba`
and `answers` (so its rows are `imgclf predict`'s), add the decision rule, and write the rows as
one Parquet or CSV file (cluster.predict hands out the shards). A detector job's rows are a scan's
answers instead: present, count, score and the boxes as JSON; a faces job's the count and the named
faces as JSON."""

from __future__ import annotations

import csv
import io
import time

import numpy as np

from imgclf.cluster.files import OutputFolder, decode_fetched, fetch, is_uri
from imgclf.data.images import UnusableImage
from imgclf.inference.batch import COLUMNS, csv_row

# Images decoded and scored together inside a shard: as `imgclf predict --out` batches them.
BATCH = 256
READERS = 16  # reads of URIs in flight per worker


def shard_name(k: int, format: str) -> str:
    return f"part-{k:05d}.{format}"


class ShardPredictor:
    """A Ray Data worker: loads the model once, then predicts one shard per call into its file."""

    def __init__(self, job: dict):
        import ray
        import torch

        from imgclf.inference.load import load_model

        # As many threads as CPUs this worker holds (one by default): the others belong to the
        # workers beside it, and torch would otherwise start one thread per core of the node.
        cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
        torch.set_num_threads(cpus)  # ONNX Runtime sessions take the same count (core.device.ort_options)
        self.job = job
        self.model = load_model(job["run"], job["device"], job["tta"], job["backend"])
        self.folder = OutputFolder(job["out"])
        self.rule = self.model.operating_point

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        k, paths = int(batch["shard"][0]), [str(p) for p in batch["paths"][0]]
        rows = with_decision(predict_paths(self.model, paths, self.job["top_k"]), self.rule)
        encode = _parquet_bytes if self.job["format"] == "parquet" else _csv_bytes
        self.folder.write(shard_name(k, self.job["format"]), encode(rows))
        errors = sum(1 for r in rows if "error" in r)
        return {"shard": [k], "images": [len(rows)], "errors": [errors], "seconds": [time.perf_counter() - start]}


class ShardDetector(ShardPredictor):
    """A Ray Data worker for a detector job (per image present, count, score and the boxes as JSON)
    or a faces job (per image count and the named faces as JSON): a photo's answer, not a class."""

    def __init__(self, job: dict):
        import ray
        import torch

        cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
        torch.set_num_threads(cpus)
        self.job = job
        self.kind = job.get("kind", "detector")
        if self.kind == "faces":
            self.model = _FaceAnswers(job["run"], job["device"], job["backend"])
        else:
            from imgclf.detection import load_detector

            self.model = load_detector(job["run"], job["device"], job["backend"])
        self.folder = OutputFolder(job["out"])

    def __call__(self, batch: dict) -> dict:
        start = time.perf_counter()
        k, paths = int(batch["shard"][0]), [str(p) for p in batch["paths"][0]]
        columns = COLUMNS_OF[self.kind]
        rows = detect_paths(self.model, paths, columns)
        encode = _answers_parquet if self.job["format"] == "parquet" else _answers_csv
        self.folder.write(shard_name(k, self.job["format"]), encode(rows, columns))
        errors = sum(1 for r in rows if "error" in r)
        return {"shard": [k], "images": [len(rows)], "errors": [errors], "seconds": [time.perf_counter() - start]}


class _FaceAnswers:
    """A gallery and the face models, answering one photo as the detector does: {count, faces}."""

    def __init__(self, gallery: str, device: str = "auto", backend: str = "auto"):
        from imgclf.faces import FaceModel, load_gallery

        self.model = FaceModel(device, backend)
        self.gallery = load_gallery(gallery, self.model)

    def detect(self, img) -> dict:
        from imgclf.faces import name_faces

        faces = name_faces(self.model, self.gallery, img)["faces"]
        return {"count": len(faces), "faces": faces}


DETECTOR_COLUMNS = ("path", "present", "count", "score", "boxes", "error")
FACES_COLUMNS = ("path", "count", "faces", "error")
COLUMNS_OF = {"detector": DETECTOR_COLUMNS, "faces": FACES_COLUMNS}
JSON_COLUMNS = ("boxes", "faces")  # lists of dicts: one JSON cell, as scan.json and faces.json have them
_ARROW = {"path": "string", "present": "bool_", "count": "int32", "score": "float64", "error": "string"}


def detect_paths(detector, paths: list[str], columns=DETECTOR_COLUMNS) -> list[dict]:
    """One row per path, in order: the detector's answer, or the error that made the file unusable."""
    from concurrent.futures import ThreadPoolExecutor

    from imgclf.detection import photo

    side = getattr(detector, "decode_side", None)  # a person detector: decoded no larger than it needs
    rows = []
    with ThreadPoolExecutor(READERS) as pool:
        fetched = pool.map(fetch, paths) if any(is_uri(p) for p in paths) else [None] * len(paths)
        for p, data in zip(paths, fetched):
            try:
                if isinstance(data, UnusableImage):  # fetch hands back what went wrong reading a URI
                    raise data
                if data is not None and not data:
                    raise UnusableImage("empty file (0 bytes)")
                img, size = photo(io.BytesIO(data) if data is not None else p, side)
            except UnusableImage as e:
                rows.append({"path": p, "error": e.reason})
                continue
            r = detector.detect_batch([img], [size])[0] if side else detector.detect(img)
            rows.append({"path": p, **{k: r[k] for k in columns if k not in ("path", "error")}})
    return rows


def _answers_parquet(rows: list[dict], columns) -> bytes:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string() if c in JSON_COLUMNS else getattr(pa, _ARROW[c])()) for c in columns])
    data = {c: [r.get(c) for r in rows] for c in columns}
    for c in JSON_COLUMNS:
        if c in data:
            data[c] = [json.dumps(r[c]) if c in r else None for r in rows]
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict(data, schema=schema), buf)
    return buf.getvalue().to_pybytes()


def _answers_csv(rows: list[dict], columns) -> bytes:
    import json

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([(json.dumps(r[c]) if c in r else "") if c in JSON_COLUMNS else r.get(c, "") for c in columns])
    return text.getvalue().encode("utf-8")


def predict_paths(model, paths: list[str], top_k: int) -> list[dict]:
    """One row per path, in order: `answers`' label, confidence and top_k, or the error that made
    the file unusable."""
    from concurrent.futures import ThreadPoolExecutor

    rows = []
    with ThreadPoolExecutor(READERS) as pool:
        for i in range(0, len(paths), BATCH):
            chunk, images, bad = paths[i : i + BATCH], [], {}
            fetched = pool.map(fetch, chunk) if any(is_uri(p) for p in chunk) else [None] * len(chunk)
            for p, data in zip(chunk, fetched):
                try:
                    images.append(decode_fetched(p, data, model.img_size, model.resize_mode))
                except UnusableImage as e:
                    bad[p] = e.reason
            answers = iter(model.answers(model.predict_proba(np.stack(images)), top_k) if images else ())
            rows += [{"path": p, "error": bad[p]} if p in bad else {"path": p, **next(answers)} for p in chunk]
    return rows


def with_decision(rows: list[dict], rule) -> list[dict]:
    """Each answered row with the rule that made its label (as POST /predict reports it): `decision`
    is argmax, threshold (two classes) or rejection, and `unknown` says the rejection rule declined
    to name a class. Error rows get neither."""
    for r in rows:
        if "error" not in r:
            r["decision"] = rule.rule
            r["unknown"] = rule.declined(r["label"])
    return rows


# `imgclf predict --out`'s columns, then the decision rule and the unknown flag.
CSV_COLUMNS = (*COLUMNS[:-1], "decision", "unknown", COLUMNS[-1])
PARQUET_COLUMNS = ("path", "label", "confidence", "decision", "unknown", "top_k", "top_k_probs", "error")


def _parquet_bytes(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("path", pa.string()),
            ("label", pa.string()),
            ("confidence", pa.float64()),
            ("decision", pa.string()),
            ("unknown", pa.bool_()),
            ("top_k", pa.list_(pa.string())),
            ("top_k_probs", pa.list_(pa.float64())),
            ("error", pa.string()),
        ]
    )
    ok = ["error" not in r for r in rows]
    columns = {
        "path": [r["path"] for r in rows],
        "label": [r.get("label") for r in rows],
        "confidence": [r.get("confidence") for r in rows],
        "decision": [r.get("decision") for r in rows],
        "unknown": [r.get("unknown") for r in rows],
        "top_k": [[c for c, _ in r["top_k"]] if good else None for r, good in zip(rows, ok)],
        "top_k_probs": [[p for _, p in r["top_k"]] if good else None for r, good in zip(rows, ok)],
        "error": [r.get("error") for r in rows],
    }
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), buf)
    return buf.getvalue().to_pybytes()


def _csv_bytes(rows: list[dict]) -> bytes:
    """The rows as `imgclf predict --out x.csv` writes them (top_k as "cls:p;cls:p"), with the
    decision and unknown columns before error."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        row = csv_row(r)
        extra = [r["decision"], "true" if r["unknown"] else "false"] if "decision" in r else ["", ""]
        writer.writerow([*row[:-1], *extra, row[-1]])
    return text.getvalue().encode("utf-8")
