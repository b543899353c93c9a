"""A model card (Mitchell et al., 2019) written from the run's facts.

What the run knows — architecture, data, test numbers, their uncertainty, weak classes, data
problems — is filled in; what only the owner knows (intended use, where the images come from,
who could be harmed) is left as a marked placeholder to edit in the HTML file.
"""

from __future__ import annotations

from imgclf.evaluation.metrics import wilson
from imgclf.reporting.data import Facts, calibrated, calibrated_word
from imgclf.reporting.html import edit, esc, section


def model_card_section(f: Facts) -> str:
    classes, a, m, size = f.meta.classes, f.meta.architecture, f.metrics, f.meta.input.size
    listed = ", ".join(classes) if len(classes) <= 40 else ", ".join(classes[:20]) + f", … ({len(classes) - 20} more)"
    details = [
        f"{esc(a.name)} convolutional network, {a.parameters or 0:,} parameters, "
        f"{size}×{size} RGB input; trained with imgclf "
        f"{esc(f.meta.imgclf_version or '?')}.",
        f"Answers one of {len(classes)} classes: {esc(listed)}.",
    ]
    if d := f.meta.decision:
        details.append(
            f"Says '{esc(d.positive_class)}' when its {calibrated_word(f.meta)}probability is at least "
            f"{d.threshold:.3f} ({esc(d.rule)})."
        )
    if line := _int8_line(f):
        details.append(line)
    details.append(f"Owner and contact: {edit('name, team, e-mail')}")

    use = [
        f"Intended use: {edit('who uses this model, for which decision, on what kind of images')}",
        f"Out of scope: {edit('uses it must not be put to')}",
    ]
    tested = (m or {}).get("rejection")  # metrics.json's, else the run's own record
    threshold = tested.get("threshold") if isinstance(tested, dict) else None
    if threshold is None and f.meta.rejection is not None:
        threshold = f.meta.rejection.threshold
    use.append(
        f"Images of none of the {len(classes)} classes answer <code>unknown</code> below confidence {threshold:.3f}."
        if threshold is not None
        else f"It always names one of its {len(classes)} classes, even for an image of something else: "
        "an input check or a rejection threshold belongs in front of it."
    )

    counts = f.data.get("counts", {})
    totals = {s: sum(v.values()) for s, v in counts.items()}
    data = [
        f"{sum(totals.values()):,} images from <code>{esc(f.data.get('root', '?'))}</code> "
        f"({', '.join(f'{s} {n:,}' for s, n in totals.items())}); split "
        + (
            "as given by the data"
            if f.data.get("layout") in ("split-folders", "manifest")
            else f"at random per class{_grouped(f)} (seed {esc(f.config.get('seed', '?'))})"
        )
        + ".",
        f"Source and labelling: {edit('where the images come from, who labelled them and how, time span')}",
    ]

    results = ["No test metrics."]
    if m:
        lo, hi = wilson(round(m["accuracy"] * m["n"]), m["n"])
        results = [
            f"Test accuracy {m['accuracy']:.1%} (95 % interval {lo:.1%}–{hi:.1%}, n = {m['n']:,}); "
            f"macro F1 {m['macro_avg']['f1-score']:.3f}."
        ]
        if c := m.get("calibration"):
            said = "Calibrated confidence" if calibrated(c) else "Confidence (not calibrated)"
            results.append(f"{said}: expected calibration error {c['ece_after']:.3f} on the test split.")
        recall = {c: r["recall"] for c, r in m["per_class"].items()}
        weakest = [c for c in sorted(recall, key=recall.get)[:3] if recall[c] < max(recall.values())]
        results.append(
            "Lowest recall: " + ", ".join(f"{esc(c)} {recall[c]:.2f}" for c in weakest) + "."
            if weakest
            else f"Recall {min(recall.values()):.2f} for every class."
        )
    return section(
        "model-card",
        "Model card",
        '<div class="modelcard">'
        '<p class="note">Generated from this run. Replace the yellow placeholders before sharing the model.</p>'
        + _block("Model details", details)
        + _block("Intended use", use)
        + _block("Training data", data)
        + _block("Evaluation", results)
        + _block("Limitations", _limitations(f))
        + _block(
            "Ethical considerations",
            [edit("people in the images, consent, who could be harmed by a wrong answer and how")],
        )
        + "</div>",
    )


def _int8_line(f: Facts) -> str | None:
    """The int8 model beside the fp32 one, as `imgclf export --int8` measured it (None: there is none)."""
    from imgclf.inference.quantize import int8_record

    r = int8_record(f.path)
    if r is None:
        return None
    return (
        f"Also exported as int8 (<code>model.int8.onnx</code>, backend <code>onnx-int8</code> or <code>openvino-int8</code>): test accuracy "
        f"{r['accuracy_int8']:.1%} against {r['accuracy_fp32']:.1%} in fp32 ONNX (n = {r['n_test']:,}; the same "
        f"label for {r['agreement']:.1%} of the images), calibrated on {r['n_calibration']} training images."
    )


def _limitations(f: Facts) -> list[str]:
    """Facts about the run that bound how far its numbers carry."""
    out, m = [], f.metrics
    out.append(
        "The test split comes from the same collection as the training images; images from other cameras, "
        "places or times may score lower."
    )
    if m and m["n"] < 1000:
        lo, hi = wilson(round(m["accuracy"] * m["n"]), m["n"])
        out.append(f"The test split is small ({m['n']:,} images): accuracy is known only to ±{(hi - lo) / 2:.1%}.")
    if m:
        thin = [c for c, r in m["per_class"].items() if r["support"] < 10]
        if thin:
            which = (
                "Every class has"
                if len(thin) == len(m["per_class"])
                else f"{len(thin)} class(es) (e.g. {esc(thin[0])}) have"
            )
            out.append(f"{which} fewer than 10 test images: per-class numbers are rough.")
    size = f.meta.input.size
    if size <= 48:
        out.append(f"Images are seen at {size}×{size} px: fine detail is lost.")
    n_val = f.meta.calibration.n if f.meta.calibration else 0
    if n_val and n_val < 300:
        out.append(_fitted_on_validation(f, n_val))
    train = f.data.get("counts", {}).get("train", {})
    if train and min(train.values()) > 0 and max(train.values()) / min(train.values()) >= 3:
        out.append("Classes are imbalanced in training: rare classes are predicted less often.")
    if f.doctor:
        from imgclf.data.doctor import duplicate_kinds

        kinds = duplicate_kinds(f.doctor["exact_duplicates"])
        if kinds["leakage"]:
            out.append(
                f"{len(kinds['leakage'])} set(s) of identical files sit in more than one split: the test "
                "score is somewhat inflated."
            )
        if kinds["conflicting_labels"]:
            out.append(f"{len(kinds['conflicting_labels'])} set(s) of identical files carry different labels.")
    out.append(f"Known failure modes: {edit('what you saw go wrong, conditions not covered by the data')}")
    return out


def _block(title: str, items: list[str]) -> str:
    return f"<h3>{esc(title)}</h3><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _grouped(f: Facts) -> str:
    """How the random split kept related images together (data.groups), as the data report has it."""
    by = (f.data.get("groups") or {}).get("by")
    return f", each group of related images ({esc(by)}) kept on one side" if by and by != "none" else ""


def _fitted_on_validation(f: Facts, n_val: int) -> str:
    """What a small validation split chose (a temperature, a threshold), or that it chose neither."""
    d, r = f.meta.decision, f.meta.rejection
    fitted = ["calibration"] if calibrated(f.meta) else []
    fitted += ["the threshold"] if (d and not str(d.rule or "").startswith("argmax")) or r else []
    if not fitted:
        return f"The validation split ({n_val} images) was too small to fit a calibration or a threshold; none was."
    were = "were" if len(fitted) > 1 else "was"
    return f"{' and '.join(fitted).capitalize()} {were} fitted on {n_val} validation images: treat them as approximate."
