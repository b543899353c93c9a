"""The report's account of a fine-tuning run: where the weights came from, the training stages
(head alone, then all layers) and the learning rate of every layer group.

Read from model.json ("pretrained" and "training.stages", written by api.train); a run trained
from scratch in one stage gets nothing here.
"""

from __future__ import annotations

from imgclf.reporting.data import Facts
from imgclf.reporting.html import esc, kv, num, table


def stages_html(f: Facts) -> str:
    stages = f.meta.training_record.stages
    pre = f.meta.pretrained
    if not pre and len(stages) < 2:
        return ""
    html = _weights(pre) if pre else ""
    if stages:
        rows = [
            [
                str(s["stage"]),
                esc(s["name"]),
                _epochs(s["epochs"]),
                esc(_trains(s)),
                _lr(s),
                esc(s["batchnorm"]),
            ]
            for s in stages
        ]
        html += (
            '<h3 id="stages">Training stages</h3>'
            + table(["stage", "name", "epochs", "trains", "peak learning rate", "BatchNorm"], rows)
            + (
                '<p class="note">The head-only stage is shaded on the curves above; the learning-rate '
                "schedule restarts at each stage.</p>"
                if len(stages) > 1
                else ""
            )
        )
    full = next((s for s in stages if s.get("lr_groups") and s.get("layer_decay", 1) != 1), None)
    if full:
        frozen = _frozen_groups(full)
        rows = [
            [
                str(g["layer"]),
                f"<code>{esc(g['modules'])}</code>",
                num(g["parameters"]),
                f"{g['lr_scale']:.3g}",
                "frozen" if g["layer"] in frozen else f"{g['peak_lr']:.3g}",
            ]
            for g in full["lr_groups"]
        ]
        html += (
            f'<h3 id="layer-lrs">Learning rate per layer group (stage {full["stage"]}, layer decay '
            f"{full['layer_decay']})</h3>"
            + table(["layer", "modules", "parameters", "× head lr", "peak lr"], rows, numeric=(2, 3, 4))
            + '<p class="note">Early layers hold generic features (edges, textures) and move least; the new '
            "head learns fastest. Groups from timm's <code>param_groups_layer_decay</code>.</p>"
        )
    return html


def _trains(s: dict) -> str:
    """What a stage trained: every layer, or those above the frozen ones (freeze_stride, and the
    depthwise weights frozen with freeze_depthwise)."""
    if not s.get("frozen"):
        return s.get("trains", "every layer")
    frozen = s["frozen"].split(":")[0]  # "conv_stem … blocks.2.1.bn3 (stride <= 8): eval mode, not trained"
    depthwise = f" and {s['frozen_depthwise']} depthwise convolutions' weights" if s.get("frozen_depthwise") else ""
    return f"every layer but {frozen}{depthwise}"


def _frozen_groups(s: dict) -> set[int]:
    """The layer groups training kept frozen: listed with a learning rate that they never used, as
    the optimiser's groups include them. Runs before 2026-12-02 recorded only the frozen range's
    text: the groups at or below its last module."""
    if any("frozen" in g for g in s["lr_groups"]):
        return {g["layer"] for g in s["lr_groups"] if g["frozen"]}
    if not s.get("frozen"):
        return set()
    last = s["frozen"].split(" (")[0].split(":")[0].split(" … ")[-1].strip()
    ends = [g["layer"] for g in s["lr_groups"] if g["modules"].split(" … ")[-1].strip() == last]
    return {g["layer"] for g in s["lr_groups"] if ends and g["layer"] <= ends[0]}


def _weights(pre: dict) -> str:
    origin = pre.get("weights_from") or {}
    where = {
        "file": "a local file (--weights)",
        "cache": "the local Hugging Face cache",
        "download": "downloaded from the Hugging Face hub",
        # ImageNet weights from pip (models.packaged), converted once into imgclf's cache
        "package": f"the installed package {origin.get('package') or ''}".rstrip(),
    }.get(origin.get("source"), "?")
    exp = pre.get("expected") or {}
    pairs = [
        ("starting weights", f"{esc(where)}" + (f": <code>{esc(origin['path'])}</code>" if origin.get("path") else "")),
        ("pretrained config", esc(exp.get("weights", "none (ImageNet mean/std assumed)"))),
    ]
    if exp:
        pairs.append(
            (
                "weights expect",
                esc(
                    f"{exp['input_size'][-1]} px, mean {exp['mean']}, std {exp['std']}, "
                    f"{exp['interpolation']} interpolation, crop_pct {exp['crop_pct']}"
                ),
            )
        )
    pairs += [
        (esc(k.replace("mean_std", "mean / std").replace("_", " ")), esc(v))
        for k, v in (pre.get("applied") or {}).items()
    ]
    return '<h3 id="pretrained">Pretrained weights and their preprocessing</h3>' + kv(pairs)


def _epochs(span: list[int]) -> str:
    first, last = span
    return f"{first}–{last}" if last > first else str(first)


def _lr(s: dict) -> str:
    if s.get("lr_groups") and s.get("layer_decay", 1) != 1:
        frozen = _frozen_groups(s)
        first = next((g for g in s["lr_groups"] if g["layer"] not in frozen), None)
        if frozen and first is not None:  # the lowest layer that learnt, not a frozen one's unused rate
            return f"{first['peak_lr']:.2g} (first trained layer) … {s['last_layer_lr']:.2g} (head)"
        return f"{s['first_layer_lr']:.2g} (first layer) … {s['last_layer_lr']:.2g} (head)"
    return f"{s['peak_lr']:.2g}"


def leaderboard_html(f: Facts) -> str:
    """The candidates compared on the validation split (model.json "leaderboard") and how a
    budgeted run ended ("training.plan"); empty for a run with one candidate and no budget."""
    rows = f.meta.leaderboard or []
    html = ""
    if len(rows) > 1:
        cells = [
            [
                esc(r["candidate"]) + (" <b>(kept)</b>" if r["kept"] else ""),
                num(r["val_acc"], 4),
                num(r["val_balanced_acc"], 4),
                num(r["seconds"], 1),
                esc(r["what"]),
            ]
            for r in rows
        ]
        html += (
            '<h3 id="leaderboard">Leaderboard</h3>'
            + table(["candidate", "val accuracy", "val balanced accuracy", "seconds", "what"], cells, numeric=(1, 2, 3))
            + '<p class="note">Compared on the validation split; the kept candidate is the model that predict '
            "and serve use." + (f" It was {esc(rows[0]['why'])}." if rows[0].get("why") else "") + "</p>"
        )
    plan = f.meta.training_record.plan
    if plan:
        ended = {
            "plateau": "validation stopped improving, so the learning rate was cooled down to zero and training stopped",
            "time": "the time budget left room for the cooldown only",
            "epochs": "the epoch cap was reached",
        }.get(plan.get("ended_by"), plan.get("ended_by", "?"))
        html += (
            f"<p>Time budget {num(plan.get('budget_s'), 0)} s: {esc(ended)} "
            f"(the last epoch ended {num(plan.get('spent'), 0)} s in).</p>"
        )
    return html
