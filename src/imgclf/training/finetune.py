"""Fine-tuning a pretrained backbone in two stages (the loop asks `Stages` what to train when).

Stage 1, `head` (`freeze_epochs`): only the new classifier trains. A random head on top of good
features sends large, meaningless gradients into the backbone; freezing the backbone until the
head makes sense keeps those features intact. Its BatchNorm layers stay in eval mode: their
running statistics would otherwise drift to the new data while the weights that use them cannot
adapt. The head takes the from-scratch learning rate (HEAD_LR_MULT x the fine-tuning one).

Stage 2, `all layers`: everything trains, with layer-wise (discriminative) learning rates from
timm's `param_groups_layer_decay`: the head gets `lr`, each layer below it `layer_decay` times
the one above, so early, generic layers (edges, textures) move least. BatchNorm trains again —
except with batches under BN_TRAIN_MIN_BATCH images, whose statistics are too noisy to beat the
pretrained ones: then BatchNorm stays frozen (eval mode, affine parameters still learn). The
learning-rate schedule restarts (warm-up included) for the stage.

`freeze_depthwise` keeps the depthwise convolutions' weights (one 3x3 or 5x5 filter per channel,
~2% of EfficientNet-Lite0's weights) frozen as well: on a CPU their weight gradients cost about
half of the upper layers' backward pass (oneDNN has no fast kernel for them: 0.72 -> 0.39 s per
64 images at 128 px on 2 cores), while the pointwise convolutions around them, BatchNorm's affine
parameters and the head still learn. flowers5: test accuracy 0.838 against 0.842 training them.

`freeze_stride` S keeps the layers that compute features at stride <= S (stem and early stages,
from timm's `feature_info`) frozen throughout, their BatchNorm in eval mode. Early layers hold
generic edges and textures that rarely need changing, and on a CPU they cost most of a step: at
128 px, EfficientNet-Lite0 trains at 24 images/s with every layer learning and at 56 with the
stride <= 8 layers frozen (2 cores; no backward pass runs through them).

A run without a frozen stage is one stage over all epochs, as before. Each epoch belongs to a
stage by its number alone, so a resumed run rebuilds the right stage's optimizer.
"""

from __future__ import annotations

import torch

from imgclf.core.errors import UserError
from imgclf.settings.config import TrainConfig
from imgclf.training.optim import lr_factor, make_optimizer

HEAD_LR_MULT = 5  # undoes the /5 of the fine-tuning learning rate (training.defaults) for a fresh head
BN_TRAIN_MIN_BATCH = 16  # smaller batches keep pretrained BatchNorm statistics frozen in stage 2
FIRST_LAYER_SHARE = 0.05  # auto layer_decay: the first layer gets ~1/20 of the head's learning rate ...
DECAY_RANGE = (0.65, 0.9)  # ... within the range fine-tuning recipes use (BEiT, ConvNeXt: 0.65-0.9)


def is_finetune(cfg: TrainConfig) -> bool:
    """A timm model that starts from trained weights."""
    return cfg.model.startswith("timm/") and bool(cfg.weights or cfg.pretrained)


def stage_defaults(c: dict, is_pretrained: bool) -> list[str]:
    """Fill `freeze_epochs` and `layer_decay` in the settings dict `c` (epochs already chosen);
    return one note per choice."""
    notes = []
    timm_model = c["model"].startswith("timm/")
    if not timm_model and ((c["freeze_epochs"] or 0) > 0 or c["layer_decay"] not in (None, 1, 1.0)):
        raise UserError(f"--freeze-epochs and --layer-decay apply to timm models (timm/<arch>), not to '{c['model']}'")
    if c["freeze_epochs"] is None:
        c["freeze_epochs"] = min(3, max(1, c["epochs"] // 10)) if is_pretrained and c["epochs"] >= 2 else 0
        if is_pretrained:
            notes.append(
                f"freeze_epochs={c['freeze_epochs']}: train the new head alone first, backbone frozen"
                if c["freeze_epochs"]
                else "freeze_epochs=0: too few epochs for a head-only stage"
            )
    if c["layer_decay"] is None:
        if is_pretrained:
            n = count_layers(c["model"][len("timm/") :], c["model_kwargs"])
            lo, hi = DECAY_RANGE
            c["layer_decay"] = round(min(hi, max(lo, FIRST_LAYER_SHARE ** (1 / max(1, n - 1)))), 3)
            notes.append(
                f"layer_decay={c['layer_decay']}: {n} layer groups, the first learns at "
                f"{c['layer_decay'] ** (n - 1):.2g} x the head's learning rate"
            )
        else:
            c["layer_decay"] = 1.0
    if not 0 <= c["freeze_epochs"] <= c["epochs"]:
        raise UserError(f"freeze_epochs must be between 0 and epochs ({c['epochs']}), not {c['freeze_epochs']}")
    if not 0 < c["layer_decay"] <= 1:
        raise UserError(
            f"layer_decay must be in (0, 1] (1 = the same learning rate everywhere), not {c['layer_decay']}"
        )
    return notes


def count_layers(arch: str, kwargs: dict) -> int:
    """Layer groups timm's layer decay sees in `arch` (built on the meta device: no memory, fast)."""
    import timm
    from timm.models import group_parameters

    with torch.device("meta"):
        net = timm.create_model(arch, **kwargs)
    if not hasattr(net, "group_matcher"):
        return 1
    return max(group_parameters(net, net.group_matcher(coarse=False), reverse=True).values()) + 1


class Stages:
    """Which parameters train, with which optimizer and learning rate, at each epoch."""

    def __init__(self, model: torch.nn.Module, cfg: TrainConfig, batch_size: int):
        self.cfg = cfg
        self.plan = None  # training.budget.Plan of a budgeted run, set by the loop
        self.epochs_run: int | None = None  # a budgeted run's last epoch, once it has ended
        self.freeze = int(cfg.freeze_epochs or 0)
        self.decay = float(cfg.layer_decay or 1.0)
        # After a linear probe, BatchNorm keeps the statistics the probe's head was fitted on: batch
        # statistics would shift every feature under it (measured: fine-tuning then starts below the probe).
        self.bn_frozen_in_full = is_finetune(cfg) and (batch_size < BN_TRAIN_MIN_BATCH or bool(cfg.probe))
        self.head = _classifier(model) if self.freeze or self.bn_frozen_in_full else None
        self.prefix = frozen_prefix(model, int(cfg.freeze_stride or 0))  # the stem and early stages
        self.depthwise = depthwise_weights(model, set(self.prefix)) if cfg.freeze_depthwise else []
        self.frozen = self.prefix + self.depthwise
        frozen = set(self.frozen)
        self.frozen_norms = [
            m
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            and n
            and all(f"{n}.{p}" in frozen for p, _ in m.named_parameters())
        ]

    def number(self, epoch: int) -> int:
        """1 for the head-only stage (or the single stage of a plain run), 2 for all layers."""
        return 2 if 0 < self.freeze <= epoch else 1

    def head_only(self, epoch: int) -> bool:
        return epoch < self.freeze

    def starts(self, epoch: int) -> bool:
        return 0 < epoch == self.freeze

    def optimizer(self, model: torch.nn.Module, epoch: int) -> torch.optim.Optimizer:
        """The optimizer of `epoch`'s stage; sets which parameters train."""
        c = self.cfg
        if self.head_only(epoch):
            for p in model.parameters():
                p.requires_grad_(False)
            for p in self.head.parameters():
                p.requires_grad_(True)
            return make_optimizer(model, c.optimizer, c.lr, c.weight_decay, c.momentum)
        if self.freeze or self.frozen:
            model.requires_grad_(True)
            named = dict(model.named_parameters())
            for n in self.frozen:
                named[n].requires_grad_(False)
        return make_optimizer(model, c.optimizer, c.lr, c.weight_decay, c.momentum, groups=self._groups(model))

    def lr(self, epoch: int, step: int, steps_per_epoch: int) -> float:
        """The schedule's learning rate: restarted at each stage, over that stage's steps; in a
        budgeted run the last stage follows its plan (training.budget) instead."""
        c = self.cfg
        if self.plan is not None and not self.head_only(epoch):
            return c.lr * self.plan.factor(epoch, step)
        first, end = (0, self.freeze) if self.head_only(epoch) else (self.freeze, c.epochs)
        peak = c.lr * HEAD_LR_MULT if self.head_only(epoch) else c.lr
        return peak * lr_factor(
            (epoch - first) * steps_per_epoch + step,
            (end - first) * steps_per_epoch,
            c.schedule,
            int(c.warmup_epochs * steps_per_epoch),
        )

    def train_mode(self, model: torch.nn.Module, epoch: int) -> None:
        model.train()
        if self.head_only(epoch) or self.bn_frozen_in_full:
            head = set(self.head.modules())
            for m in model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m not in head:
                    m.eval()
        for m in self.frozen_norms:  # frozen early layers: their running statistics stay the pretrained ones
            m.eval()

    def record(self, model: torch.nn.Module) -> list[dict]:
        """The stages as model.json and the report show them."""
        c = self.cfg
        out = []
        if self.freeze:
            names = [n for n, p in model.named_parameters() if any(p is q for q in self.head.parameters())]
            out.append(
                {
                    "stage": 1,
                    "name": "head",
                    "epochs": [1, self.freeze],
                    "peak_lr": c.lr * HEAD_LR_MULT,
                    "trains": f"the classifier only ({_span(names)})",
                    "batchnorm": "frozen: eval mode, pretrained running statistics kept",
                }
            )
        if self.freeze < c.epochs:
            layers = self.layer_table(model)
            why = "after the linear probe" if c.probe else f"batches under {BN_TRAIN_MIN_BATCH} images"
            bn = f"frozen: eval mode ({why})" if self.bn_frozen_in_full else "train mode"
            out.append(
                {
                    "stage": 2 if self.freeze else 1,
                    "name": "upper layers" if self.prefix else "all layers",
                    "epochs": [self.freeze + 1, self.epochs_run or c.epochs],
                    "budgeted": bool(c.time_budget),
                    "ended": self.epochs_run is not None,
                    "frozen": (
                        f"{_span(self.prefix)} (stride <= {c.freeze_stride}): eval mode, not trained"
                        if self.prefix
                        else None
                    ),
                    "frozen_depthwise": len(self.depthwise),
                    "peak_lr": c.lr,
                    "layer_decay": self.decay,
                    "first_layer_lr": layers[0]["peak_lr"],
                    "last_layer_lr": layers[-1]["peak_lr"],
                    "lr_groups": layers,
                    "batchnorm": bn,
                }
            )
        return out

    def layer_table(self, model: torch.nn.Module) -> list[dict]:
        """Per layer group, first (stem) to last (head): its parameters and peak learning rate."""
        named = dict(model.named_parameters())
        names, order = {id(p): n for n, p in named.items()}, {n: i for i, n in enumerate(named)}
        by_scale: dict[float, list[str]] = {}
        for g in self._groups(model, every=True):
            by_scale.setdefault(g.get("lr_scale", 1.0), []).extend(names[id(p)] for p in g["params"])
        rows, prefix = [], set(self.prefix)
        for i, scale in enumerate(sorted(by_scale)):
            params = sorted(by_scale[scale], key=order.get)
            rows.append(
                {
                    "layer": i,
                    "modules": _span(params),
                    "parameters": sum(named[n].numel() for n in params),
                    "lr_scale": scale,
                    "peak_lr": self.cfg.lr * scale,
                    "frozen": all(n in prefix for n in params),  # freeze_stride's: its rate is never used
                }
            )
        return rows

    def _groups(self, model: torch.nn.Module, every: bool = False) -> list[dict] | None:
        """timm's layer-decay parameter groups of the trainable parameters (`every`: of all, for the
        table); None without layer decay: make_optimizer's plain decay/no-decay groups."""
        if self.decay == 1.0:
            return [{"params": [p for p in model.parameters() if p.requires_grad or every]}] if every else None
        from timm.optim import param_groups_layer_decay

        skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
        trainable = [(p, p.requires_grad) for p in model.parameters()]
        if every:
            model.requires_grad_(True)
        try:
            return param_groups_layer_decay(
                model, weight_decay=self.cfg.weight_decay, layer_decay=self.decay, no_weight_decay_list=skip
            )
        finally:
            for p, flag in trainable:
                p.requires_grad_(flag)


def frozen_prefix(model: torch.nn.Module, stride: int) -> list[str]:
    """Names of the parameters up to the last layer working at `stride` or finer (timm's
    feature_info): the stem and early stages. Empty for 0 or a model without feature_info."""
    info = getattr(model, "feature_info", None)
    if not stride or info is None:
        return []
    modules = [f["module"] for f in info if f["reduction"] <= stride]
    if not modules:
        return []
    names = [n for n, _ in model.named_parameters()]
    last = max((i for i, n in enumerate(names) if n.startswith(modules[-1] + ".")), default=-1)
    return names[: last + 1]


def depthwise_weights(model: torch.nn.Module, skip: set[str]) -> list[str]:
    """Names of the depthwise convolutions' weights (one filter per channel) not in `skip`."""
    convs = {
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    }
    return [n for n, _ in model.named_parameters() if n not in skip and n.endswith(".weight") and n[:-7] in convs]


def _classifier(model: torch.nn.Module) -> torch.nn.Module:
    if not hasattr(model, "get_classifier"):
        raise UserError("freeze_epochs needs a model with a classifier head (timm models have one)")
    head = model.get_classifier()
    return head if isinstance(head, torch.nn.Module) else torch.nn.ModuleList(head)


def _span(names: list[str]) -> str:
    """'layer1.0.conv1 … layer1.0.bn2' for a group's parameter names (module paths, first and last)."""
    mods = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in names))
    return mods[0] if len(mods) == 1 else f"{mods[0]} … {mods[-1]}" if mods else "–"


def describe(stages: list[dict]) -> str:
    """One console line per stage."""
    lines = []
    for s in stages:
        first, last = s["epochs"]
        where = f"epochs {first}-{last}" if last > first else f"epoch {first}"
        if s.get("budgeted") and not s.get("ended"):
            where = f"from epoch {first} until validation plateaus or the time budget ends"
        lr = (
            f"lr {s['peak_lr']:.2g}"
            if "lr_groups" not in s or s["layer_decay"] == 1
            else f"lr {s['first_layer_lr']:.2g} (first layer) … {s['last_layer_lr']:.2g} (head), layer_decay {s['layer_decay']}"
        )
        frozen = f", frozen: {s['frozen'].split(':')[0]}" if s.get("frozen") else ""
        if s.get("frozen_depthwise"):
            frozen += f" and {s['frozen_depthwise']} depthwise convolutions' weights"
        lines.append(
            f"stage {s['stage']} ({s['name']}): {where}, {lr}, BatchNorm {s['batchnorm'].split(':')[0]}{frozen}"
        )
    return "\n".join(lines)
