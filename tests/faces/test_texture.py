"""The light-normalised texture (faces/texture.py) and how a gallery weighs it in: chosen for faces lit
by one point light (a stand-in with Extended Yale B's layout, made from ORL when ../shared is here),
left out where the embedding alone names everyone, kept through save, load, add and remove; a
gallery written before textures still loads and names."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

pytest.importorskip("dlib")

import imgclf.faces as F  # noqa: E402
from imgclf.core.errors import UserError  # noqa: E402
from imgclf.faces import gallery as G  # noqa: E402
from imgclf.faces import summary as S  # noqa: E402
from imgclf.faces import texture as T  # noqa: E402
from imgclf.models import texture as D  # noqa: E402 - the descriptor itself

GRACE = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("L")
ORL = Path(__file__).parents[3] / "shared" / "datasets" / "orl-faces.tar.gz"
BENCH = Path(__file__).parents[2] / "bench"


def _cos(a, b) -> float:
    return float(a @ b)


def test_the_texture_keeps_a_face_and_drops_the_light():
    face = np.asarray(GRACE.resize((120, 150)))
    x = face.astype(np.float32)
    ramp = np.linspace(0.15, 1.0, x.shape[1])[None, :]  # lit from the right, the left side near black
    relit = [np.clip(x * k, 0, 255).astype(np.uint8) for k in (0.3, 1.3)] + [(x * ramp).astype(np.uint8)]
    base = T.texture(face)
    assert base.shape == (T.DIM,) and abs(np.linalg.norm(base) - 1) < 1e-5
    other = T.texture(np.asarray(ImageOps.mirror(GRACE).resize((120, 150)).rotate(15)))
    for r in relit:
        assert _cos(base, T.texture(r)) > _cos(base, other) + 0.05
    # 58 uniform patterns and one bin for the rest; a flat image is all one pattern (every neighbour >=).
    assert (D._BINS < 58).sum() == 58 and set(
        np.unique(D.lbp(torch.ones(1, 5, 5), torch.from_numpy(D._BINS)).numpy())
    ) == {D._BINS[255]}


def test_a_face_in_a_larger_photo_is_read_as_a_crop_would_frame_it():
    big = Image.new("RGB", (800, 600))
    big.paste(GRACE.convert("RGB").resize((100, 125)), (300, 200))
    cut = T.region(big, (310, 235, 390, 320))
    fx1, fy1, fx2, fy2 = T.FRAME
    assert cut.shape == pytest.approx((86 / (fy2 - fy1), 81 / (fx2 - fx1)), abs=1.5)
    small = GRACE.resize((100, 125))
    assert T.region(small.convert("RGB"), (0, 0, 10, 10)).shape == (125, 100)  # a crop is read whole


def _people(rng, n_people, photos, informative: bool, dim: int) -> np.ndarray:
    centres = rng.normal(size=(n_people, dim))
    x = np.repeat(centres, photos, axis=0) * (1.0 if informative else 0.0) + rng.normal(size=(n_people * photos, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_texture_counts_only_where_the_enrolment_photos_say_it_names_more():
    rng = np.random.default_rng(0)
    owner = np.repeat(np.arange(10), 4)
    blind = _people(rng, 10, 4, informative=False, dim=128)  # an embedding the light has blinded
    sharp = _people(rng, 10, 4, informative=True, dim=128)
    tex = np.abs(_people(rng, 10, 4, informative=True, dim=T.DIM))  # textures are histograms: >= 0
    noise = np.abs(_people(rng, 10, 4, informative=False, dim=T.DIM))
    blend, scores = T.choose_blend(blind, tex, owner, 10)
    assert blend is not None and scores[str(blend.weight)] >= scores["0.0"] + T.MIN_GAIN
    assert sum(blend.shares) == pytest.approx(1.0) and blend.shares[1] > 0.5
    assert T.choose_blend(sharp, noise, owner, 10)[0] is None
    assert T.choose_blend(sharp, tex, owner, 10)[0] is None  # the embedding names all already: no gain to buy
    assert "why" in T.choose_blend(sharp[:4], tex[:4], owner[:4], 1)[1]  # one person: nothing to compare


@pytest.fixture(scope="module")
def model():
    return F.FaceModel()


@pytest.mark.slow
@pytest.mark.skipif(not ORL.is_file(), reason="../shared/datasets is not here")
def test_faces_lit_by_one_point_light_are_named_with_the_texture(model, tmp_path):
    """Yale B's layout: one pose a person, lit by 8 point lights (bench/transfer.py's shaded); 4 photos
    enrolled, 4 named. The gallery chooses the texture and names more than the embedding alone."""
    import tarfile

    sys.path.insert(0, str(BENCH))
    from transfer import shaded

    with tarfile.open(ORL) as t:
        t.extractall(tmp_path, filter="data")
    one = tmp_path / "one"
    for p in range(1, 13):
        (one / f"s{p}").mkdir(parents=True)
        shutil.copy(tmp_path / "orl-faces" / f"s{p}" / "1.pgm", one / f"s{p}" / "1.pgm")
    lit = shaded(one, tmp_path / "lit", copies=8)
    known, probes = tmp_path / "known", []
    for person in sorted(lit.iterdir()):
        photos = sorted(person.iterdir())
        (known / person.name).mkdir(parents=True)
        for f in photos[:4]:
            shutil.copy(f, known / person.name / f.name)
        probes += photos[4:]

    summary = F.enrol(known, tmp_path / "g", model=model, verbose=False)
    texture = summary["choice"]["texture"]
    assert texture["weight"] > 0, texture
    plain = G.load_gallery(tmp_path / "g")
    assert plain.blend.weight == texture["weight"] and plain.textures.shape == (48, T.DIM)
    plain.rebuilt(plain.people, plain.embeddings, plain.owner, plain.sources, textures=None).save(tmp_path / "e")

    def right(gallery) -> float:  # top-1 (threshold 0: whoever is nearest is named)
        rows = F.identify(gallery, probes, threshold=0.0, model=model, verbose=False)
        return float(np.mean([bool(r["faces"]) and r["faces"][0]["name"] == Path(r["path"]).parent.name for r in rows]))

    with_texture, embedding_alone = right(tmp_path / "g"), right(tmp_path / "e")
    assert with_texture >= embedding_alone + 0.1, (with_texture, embedding_alone)

    # remove and add choose again, on the textures kept in the gallery
    F.remove(tmp_path / "g", "s12", verbose=False)
    after = F.add(tmp_path / "g", "s12", list((known / "s12").iterdir()), model=model, verbose=False)
    assert after["choice"]["texture"]["weight"] > 0 and G.load_gallery(tmp_path / "g").textures.shape == (48, T.DIM)


def _enrolled_two(model, tmp_path) -> tuple[Path, Path, dict, dict]:
    """Grace Hopper and her mirror image enrolled from two photos each: (the photos' folder, the
    gallery file, its header, its tensors), for a test to rewrite as an older imgclf would have."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    known = tmp_path / "known"
    for name, img in (("Grace", GRACE), ("Grace2", ImageOps.mirror(GRACE))):
        (known / name).mkdir(parents=True)
        for i, size in enumerate((300, 260)):
            img.resize((size, size * 5 // 4)).save(known / name / f"{i}.jpg")
    F.enrol(known, tmp_path / "g", model=model, verbose=False)
    path = tmp_path / "g" / G.FILE
    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["imgclf_gallery"])
    return known, path, header, load_file(str(path))


def test_a_gallery_written_before_textures_still_loads_and_names(model, tmp_path):
    from safetensors.numpy import save_file

    known, path, header, tensors = _enrolled_two(model, tmp_path)
    header.pop("blend")
    tensors = {k: v for k, v in tensors.items() if k in ("embeddings", "owner")}
    save_file(tensors, str(path), metadata={"imgclf_gallery": json.dumps(header)})

    old = G.load_gallery(tmp_path / "g")
    assert old.textures is None and old.blend is None and not old.uses_texture
    rows = F.identify(tmp_path / "g", [known / "Grace" / "0.jpg"], model=model, verbose=False)
    assert rows[0]["faces"][0]["name"] in ("Grace", "Grace2")
    GRACE.resize((280, 350)).save(tmp_path / "new.jpg")
    F.add(tmp_path / "g", "Grace", [tmp_path / "new.jpg"], model=model, verbose=False)
    assert G.load_gallery(tmp_path / "g").textures is None  # its old faces have none: it stays without


def test_a_gallery_with_textures_of_the_earlier_descriptor_goes_on_or_says_to_re_enrol(model, tmp_path):
    """Textures read by the first descriptor (80 x 96, 8 x 8 cells) do not compare with today's: without
    a blend the gallery goes on with its embeddings; with one, one line says to re-enrol."""
    from safetensors.numpy import save_file

    known, path, header, tensors = _enrolled_two(model, tmp_path)
    header.pop("texture")  # the earlier imgclf wrote no descriptor record
    tensors["textures"] = np.full((len(tensors["embeddings"]), D.dim(D.LEGACY["grid"])), 0.05, np.float32)
    header["blend"] = None
    save_file(tensors, str(path), metadata={"imgclf_gallery": json.dumps(header)})
    old = G.load_gallery(tmp_path / "g")
    assert old.textures is None and old.blend is None
    assert F.identify(tmp_path / "g", [known / "Grace" / "0.jpg"], model=model, verbose=False)[0]["faces"]

    header["blend"] = {"weight": 0.5, "shares": [0.5, 0.5]}
    tensors["texture_centre"] = np.zeros(D.dim(D.LEGACY["grid"]), np.float32)
    save_file(tensors, str(path), metadata={"imgclf_gallery": json.dumps(header)})
    with pytest.raises(UserError, match="re-enrol"):
        G.load_gallery(tmp_path / "g")


def test_a_saved_gallery_names_as_the_one_in_memory(tmp_path):
    """scikit-learn's multinomial coef_ is column-major, and safetensors.numpy writes the buffer as it
    lies: saved as it was, a logistic gallery came back with its weights shuffled (found 2026-11-27)."""
    rng = np.random.default_rng(1)
    owner = np.repeat(np.arange(4), 6)
    emb = _people(rng, 4, 6, informative=True, dim=128)
    lr = G._logistic(emb, owner)
    coef, intercept = lr.coef_.astype(np.float32), lr.intercept_.astype(np.float32)
    g = G.Gallery(
        list("abcd"), emb, owner, [{}] * len(emb), {"name": "t"}, method="logistic", coef=coef, intercept=intercept
    )
    assert g.coef.flags["F_CONTIGUOUS"] and not g.coef.flags["C_CONTIGUOUS"]  # what scikit-learn hands over
    back = G.load_gallery(g.save(tmp_path / "g"))
    assert np.array_equal(back.coef, g.coef) and back.method == "logistic"
    probes = _people(np.random.default_rng(1), 4, 6, informative=True, dim=128)
    assert back.name(probes, -1.0) == g.name(probes, -1.0)


def test_the_texture_line_says_whether_it_counts_and_why():
    line = S._texture_line
    assert line({"weight": 0.0, "leave_one_out": {"why": "two people with 2+ photos are needed"}}).startswith(
        "not used (two people"
    )
    off = line({"weight": 0.0, "leave_one_out": {"0.0": 1.0, "0.25": 0.99, "0.5": 0.95}})
    assert off == "not used (leave-one-out top-1 1.000 with the embedding alone, 0.990 at best with the texture)"
    on = line({"weight": 0.75, "leave_one_out": {"0.0": 0.52, "0.25": 0.7, "0.75": 0.86}})
    assert on.startswith("weight 0.75 ") and on.endswith(
        "(leave-one-out top-1 0.520 with the embedding alone, 0.860 with it)"
    )
