"""The report's explanation gallery: where the network looked on a few right answers and on its
most confident mistakes (image | Grad-CAM overlay), and its first-layer filters.

A heatmap on the background instead of the object is the quickest sign of a model that learned
the wrong cue (a watermark, the sky behind every bird), which accuracy alone never shows.
"""

from __future__ import annotations

import numpy as np

from imgclf.reporting.data import Facts, gallery_picks, png_uri, thumbnail_of
from imgclf.reporting.html import esc, figure, section

CORRECT, WRONG = 8, 8  # pairs shown: 16 images x 2 small thumbnails keeps the page light
THUMB = 110
# The report's stylesheet has no two-image card; this one stays with the section that uses it.
STYLE = (
    "<style>.explain{display:grid;grid-template-columns:repeat(auto-fill,minmax(244px,1fr));gap:10px}"
    ".explain .pred img{display:inline-block;margin:0 2px 4px 0}</style>"
)


def explanations_section(f: Facts, model) -> str:
    """The 'explanations' section for the report of `model` (an imgclf Model or ensemble)."""
    from imgclf.core.errors import UserError
    from imgclf.inference.explain import Explainer, first_layer_filters, png_bytes

    title = "Explanations"
    try:
        explainer = Explainer(model, "gradcam")
    except UserError as e:
        return section("explanations", title, f"<p>No explanations: {esc(e)}</p>")
    body = STYLE + _gallery(f, model, explainer)
    filters = first_layer_filters(explainer.net)
    if filters is not None:
        body += '<h3 id="explanations-filters">First-layer filters</h3>' + figure(
            png_uri(png_bytes(filters)),
            "first-layer filters",
            "The first convolution's filters, each scaled to its own range (colour for RGB input). " + _filters_note(f),
        )
    return section("explanations", title, body)


def _filters_note(f: Facts) -> str:
    """How to read the filters: a network trained from scratch learnt them here; a pretrained one's
    came from its weights, and a frozen stem's are those weights as they were."""
    stages = f.meta.training_record.stages if f.meta.training_record else []
    if any(s.get("frozen") for s in stages):  # freeze_stride freezes from the stem up
        return "This run kept them frozen: they are the pretrained weights' own, not learnt from these images."
    if f.meta.pretrained:
        return "They started from the pretrained weights; fine-tuning moves them little."
    return "Smooth edge and colour detectors are healthy; pure noise after training means that layer barely learned."


def _gallery(f: Facts, model, explainer) -> str:
    if f.test is None:
        return "<p>No test split to explain.</p>"
    t = f.test
    sample, wrong = gallery_picks(t, 4 * CORRECT, WRONG)
    right = [i for i in sample if t.pred[i] == t.labels[i]][:CORRECT]
    picks = [(int(i), True) for i in right] + [(int(i), False) for i in wrong]
    loaded = []
    for i, ok in picks:
        try:
            loaded.append((i, ok, *_load(model, t.paths[i])))
        except Exception:  # noqa: BLE001 - a test image gone since training leaves no card
            continue
    if not loaded:
        return "<p>The test images are no longer on disk: no explanations.</p>"
    # The answer's class, or the top class for an 'unknown' answer: what made the model say it.
    targets = [int(t.pred[i]) if t.pred[i] >= 0 else int(t.probs[i].argmax()) for i, *_ in loaded]
    maps = explainer.heatmaps(np.stack([x for _, _, x, _ in loaded]), targets)
    cards = {True: [], False: []}
    for (i, ok, _, original), target, heat in zip(loaded, targets, maps):
        cards[ok].append(_card(f, i, ok, target, original, heat, model.resize_mode))
    html = (
        f'<p class="note">Grad-CAM at layer <code>{esc(explainer.describe())}</code> '
        "for the class the model answered: red is where the "
        "evidence for it lies. Each card: the test image, then the heatmap over it. "
        "<code>imgclf explain RUN IMAGE --method ...</code> draws these for any image.</p>"
    )
    html += '<h3 id="explanations-correct">Right answers</h3>'
    html += f'<div class="explain">{"".join(cards[True])}</div>' if cards[True] else "<p>None to show.</p>"
    html += '<h3 id="explanations-mistakes">Most confident mistakes</h3>'
    html += (
        f'<div class="explain">{"".join(cards[False])}</div>'
        if cards[False]
        else "<p>No mistakes on the test split.</p>"
    )
    return html


def _load(model, path: str):
    from imgclf.data.images import read_scaled

    # Decoded once at twice the card's side: the thumbnail and the heatmap's overlay both come from it.
    return model.preprocess(path), read_scaled(path, 2 * THUMB)[0]


def _card(f: Facts, i: int, ok: bool, target: int, original, heat: np.ndarray, resize_mode: str) -> str:
    from imgclf.inference.explain import overlay, png_bytes

    t, classes = f.test, f.meta.classes
    pred = int(t.pred[i])
    answer = classes[pred] if pred >= 0 else "unknown"
    picture = overlay(original, heat, resize_mode, side=(THUMB, THUMB))
    return (
        f'<div class="pred {"ok" if ok else "wrong"}" title="{esc(t.paths[i])}">'
        f'<img src="{thumbnail_of(original.copy(), THUMB)}" alt="test image">'
        f'<img src="{png_uri(png_bytes(picture))}" alt="heatmap for {esc(classes[target])}">'
        f"<div>true: {esc(classes[t.labels[i]])}</div>"
        f"<div><b>{esc(answer)}</b> {t.probs[i, target]:.2f} · map for {esc(classes[target])}</div></div>"
    )
