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
                esc(s.get("trains", "every layer")),
                _lr(s),
                esc(s["batchnorm"]),
            ]
            for s in stages
        ]
        html += (
            '<h3 id="stages">Training stages</h3>'
            + table(["stage", "name", "epochs", "trains", "peak learning rate", "BatchNorm"], rows)
            + '<p class="note">The head-only stage is shaded on the curves above; the learning-rate '
            "schedule restarts at each stage.</p>"
        )
    full = next((s for s in stages if s.get("lr_groups") and s.get("layer_decay", 1) != 1), None)
    if full:
        rows = [
            [
                str(g["layer"]),
                f"<code>{esc(g['modules'])}</code>",
                num(g["parameters"]),
                f"{g['lr_scale']:.3g}",
                f"{g['peak_lr']:.3g}",
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


def _weights(pre: dict) -> str:
    origin = pre.get("weights_from") or {}
    where = {
        "file": "a local file (--weights)",
        "cache": "the local Hugging Face cache",
        "download": "downloaded from the Hugging Face hub",
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
            "and serve use.</p>"
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
            f"({num(plan.get('spent'), 0)} s spent by the last epoch).</p>"
        )
    return html
