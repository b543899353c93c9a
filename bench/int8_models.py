"""bench/int8.py's detector and face embedder parts: fp32 against int8 in ONNX Runtime and OpenVINO.

Detector (the pretrained SSDLite person detector) on bench/presence.py's two labelled sets: the
shared street scenes (COCO photos, 61 with 254 people, 40 without) and INRIA people pasted into the
person-free ones. Each set's int8 graph is calibrated on the *other* set's photos with people (the
street photos' for the pasted set, the pasted photos' for the street set), as `imgclf export person
--int8 --calibration DIR` does with a user's photos, so no photo measured was calibrated on.
Columns: AP@0.5 (pycocotools) of the boxes at the detector's threshold and of every box >= 0.01;
presence balanced accuracy at the threshold; photos/s of `detect` on decoded 640x480 photos (resize,
network, NMS; no JPEG decoding) at batch 1, the best of 10 short rounds with the engines interleaved.

Face embedder (dlib's ResNet) on the ORL faces: int8 calibrated on the faces found in orl-scenes'
people 1-20 (ORL photos pasted into street photos: the embedder sees the chips the detector cuts);
top-1 identification of all 40 people with 1 and 5 photos enrolled, on orl and orl-light
(bench/faces.py's sets); the smallest cosine similarity between a face's fp32 and int8 embeddings;
chips/s of the embedder alone at batch 1 and 16 (best of 10 interleaved rounds) and faces/s of the
whole FaceModel (detection, alignment, embedding).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import tables

ROUNDS = 10


def best_rate(fns: dict, n: int, rounds: int = ROUNDS) -> dict:
    """name -> the best items/s of `rounds` timed calls of each fn (n items a call), interleaved."""
    best = dict.fromkeys(fns, 0.0)
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = max(best[k], n / (time.perf_counter() - t))
    return best


def detector_engines(det, int8_path: Path, vino: bool) -> dict:
    from imgclf.detection.engines import OpenVinoSession
    from imgclf.inference.onnx_runtime import open_session

    out = {
        "fp32 ONNX Runtime": det,
        "int8 ONNX Runtime": replace(det, session=open_session(int8_path), backend="onnx-int8"),
    }
    if vino:
        out["fp32 OpenVINO"] = replace(det, session=OpenVinoSession(det.graph, "openvino"), backend="openvino")
        out["int8 OpenVINO"] = replace(det, session=OpenVinoSession(int8_path, "openvino-int8"), backend="openvino")
    return out


def detector_table(work: Path, vino: bool) -> None:
    import presence as P  # bench/presence.py: the sets and pycocotools' AP
    from PIL import Image

    from imgclf.detection.detector import load_detector
    from imgclf.detection.int8 import export_detector_int8

    for name in ("street-scenes", "inria-person-crops"):
        P.unpack(name, work)
    street, pasted = work / "street-scenes", work / "pasted"
    files_p = P.paste_set(street, work / "inria-person" / "person", pasted, 2, 0)
    files_s = sorted(str(p) for p in street.glob("*person/*.jpg"))
    truth_s = P.read_boxes(street / "person_boxes.csv", street)[0]
    truth_p, ignore_p = P.read_boxes(pasted / "person_boxes.csv", pasted)
    with_people = work / "pasted-with-people"  # the pasted set's photos with people, as a calibration folder
    with_people.mkdir(exist_ok=True)
    for f in files_p:
        if not f.endswith("_none.jpg"):
            shutil.copy(f, with_people)
    det = load_detector(backend="onnx")
    sets = {  # name: files, presence labels, truth, ignore, calibration folder
        "street": (files_s, {f: int("/person/" in f) for f in files_s}, truth_s, {}, with_people),
        "pasted": (files_p, {f: int(f in truth_p) for f in files_p}, truth_p, ignore_p, street / "person"),
    }
    big = Image.open(files_s[0]).convert("RGB").resize((640, 480))
    rows = []
    for s, (files, labels, truth, ignore, calib) in sets.items():
        path = work / f"int8-for-{s}.onnx"
        made = export_detector_int8("person", calib, path, max_loss=100)
        print(
            f"{s}: int8 calibrated on {made['n_calibration']} photos of {calib.name}/ in {made['seconds']:.0f} s; "
            f"same present/absent answer as fp32 on {made['presence_agreement']:.1%} of them",
            flush=True,
        )
        engines = detector_engines(det, path, vino)
        rates = best_rate({k: (lambda d=d: d.detect(big)) for k, d in engines.items()}, 1)
        for k, d in engines.items():
            found, _ = P.run_peer(P.imgclf_peer(d), files)
            ap = P.coco_ap(found, truth, ignore, d.threshold)[0]
            every = P.coco_ap(found, truth, ignore, P.ALL_BOXES)[0]
            acc = P.presence(found, labels, d.threshold)[1]
            rows.append([s, k, *(tables.V(v, ".3f") for v in (ap, every, acc)), tables.V(rates[k], ".1f")])
    head = ["set", "engine", "AP@0.5", "AP@0.5, every box", "presence bal. acc.", "photos/s (640x480, batch 1)"]
    tables.emit("detector", head, rows, title="\nperson detector (SSDLite, 300x300), fp32 vs int8:")


def faces_table(work: Path) -> None:
    import faces as FB  # bench/faces.py: the ORL sets, embedding and k-shot top-1

    from imgclf.faces import FaceModel
    from imgclf.faces.int8 import export_embedder_int8
    from imgclf.inference.onnx_runtime import open_session

    scenes = FB.build("orl-scenes", work)
    calib = work / "orl-scenes-1-20"
    if not calib.exists():
        for person in sorted(scenes.iterdir(), key=lambda p: int(p.name[1:]))[:20]:
            shutil.copytree(person, calib / person.name)
    path = work / "face-int8.onnx"
    made = export_embedder_int8(calib, path)
    print(f"faces: int8 calibrated on {made['n_faces']} faces in {made['seconds']:.0f} s", flush=True)
    model = FaceModel("cpu")
    fp32_session, int8_session = model.embed.session, open_session(path)
    sessions = {"fp32 ONNX Runtime": fp32_session, "int8 ONNX Runtime": int8_session}
    rows = []
    chips = None
    for name in ("orl", "orl-light"):
        folder = FB.build(name, work)
        emb = {}
        for k, session in sessions.items():
            model.embed.session = session
            e, owner, found, stats = FB.embed(folder, model)
            emb[k] = e
            shots = [tables.V(FB.k_shot(e, owner, found, n, 5), ".3f") for n in (1, 5)]
            rows.append([name, k, *shots, tables.V(stats["faces/s"], ".1f")])
        a, b = emb.values()
        both = np.any(a, 1) & np.any(b, 1)
        rows[-1].append(tables.V(float((a[both] * b[both]).sum(1).min()), ".4f"))
        rows[-2].append("1")
        if chips is None:
            from imgclf.data.images import read_rgb

            chips = []
            for f in sorted(folder.rglob("*.pgm"))[:16]:
                rgb = np.ascontiguousarray(np.asarray(read_rgb(f)))
                r = model.dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
                chips.append(model.chip(rgb, r))
            chips = np.stack(chips)
    speed = {}
    for n in (1, 16):

        def run(s, n=n):
            model.embed.session = s
            model.embed(chips[:n])

        speed[n] = best_rate({k: (lambda s=s: run(s)) for k, s in sessions.items()}, n)
    for row in rows:
        row += [tables.V(speed[1][row[1]], ",.0f"), tables.V(speed[16][row[1]], ",.0f")]
    head = ["set", "engine", "top-1, 1 photo enrolled", "top-1, 5 photos", "faces/s (whole FaceModel)"]
    head += ["min cosine fp32-int8", "chips/s batch 1", "chips/s batch 16"]
    tables.emit("faces", head, rows, title="\nface embedder (dlib ResNet, 150x150 chips), fp32 vs int8:")
