"""A linear probe: the new head of a pretrained network fitted on its frozen features, in seconds.

Every image goes through the frozen backbone once (training images also mirrored: two views for
the price of two forward passes, not an epoch each), and a multinomial logistic regression
(scikit-learn, L2 strength chosen on the validation split) is fitted on the pooled features. Its
weights become the network's classifier. This replaces the head-only epochs of classic
fine-tuning, which pay a full forward pass per image per epoch for the same result, and it is a
strong model on its own: fine-tuning (training.loop.fit) starts from it and keeps it unless an
epoch beats its validation accuracy. On a CPU the passes run in ONNX Runtime (training.ortembed),
and they keep the frozen layers' maps that CPU fine-tuning trains on (training.featcache).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from imgclf.core.heap import Trimmer
from imgclf.data.cache import progress_bar
from imgclf.training.afford import afforded_rows, sampled, seconds_each
from imgclf.training.featcache import LowerMaps, recording

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)  # inverse L2 strengths tried; features are standardised first
# Seconds the C search takes per training view and class, at Lite0's 1,280 features on 2 cores:
# CIFAR-10's 90,000 views and 10 classes 91 s (1.0e-4), flowers5's 6,910 and 5 classes 6.6 s (1.9e-4).
# It sizes the probe of a run whose time budget cannot afford every training image.
FIT_VIEW_S = 1.5e-4
# A C search this cheap (seconds, every fit together) goes through the whole grid even past a time
# budget's deadline: on a small set the embedding can spend the probe's share, and the deadline then
# left only the first, strongest C (a 20 s budget on 289 flowers: C=0.001, val 0.611, where the grid
# chose C=1, val 0.722, in a tenth of a second more). A large set's fits take seconds each: the deadline rules.
CHEAP_SEARCH_S = 2.0


class _Features(torch.nn.Module):
    """The pooled pre-logit features of a timm model, optionally of the mirror image."""

    def __init__(self, net: torch.nn.Module, mirror: bool = False):
        super().__init__()
        self.net, self.mirror = net, mirror

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x.flip(3) if self.mirror else x), pre_logits=True)


def fit_probe(
    net: torch.nn.Module,
    images: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    labels: np.ndarray,
    mean,
    std,
    device: torch.device,
    amp,
    channels_last: bool,
    console,
    class_weight: np.ndarray | None = None,
    keep_lower: int | None = None,
    clock=None,
    share: float = 1.0,
    seed: int = 0,
) -> tuple[dict, LowerMaps | None]:
    """Fit `net`'s classifier on frozen features; return what model.json records (val accuracy and
    loss of the probe as the network computes them, the chosen C, seconds) and the kept maps.
    `class_weight`: the per-class loss weights fine-tuning uses (training.balance), or None.
    `keep_lower` k: also keep what `net.blocks[:k]` computes for the training images, their
    mirrors and the validation images (featcache.LowerMaps) — the feature cache fine-tuning trains
    and validates on (training.featcache), for free: these passes run those layers anyway.
    `clock` (training.budget.StageClock): a time budget; the probe takes at most `share` of what it
    leaves, on a class-stratified sample (`seed`) of the training images where all would not fit
    ("training_images" in the record says how many; no maps are kept then)."""
    from imgclf.training.ortembed import ort_embedder

    t0 = time.perf_counter()
    net.to(device).eval()
    if channels_last:
        net.to(memory_format=torch.channels_last)

    fast = ort_embedder(net, images.shape[1], keep_lower, device, console)
    embed = _embedder(net, images, mean, std, device, amp, channels_last, fast, keep_lower)
    kept: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])  # training views', validation images'
    n_train, deadline, mirrors = len(train), None, True
    with torch.no_grad():
        if clock is not None and len(train):
            train, mirrors, deadline = _budgeted(embed, train, len(val), labels, clock.left, share, seed)
        keep = mirrors  # a cut leaves no time to fine-tune on the maps: none are kept
        into, t1 = kept if keep else (None, None), time.perf_counter()
        views = (1 + mirrors) * len(train) + len(val)
        # CIFAR-10's 95,000 views take minutes on 2 cores: a bar says the run is moving.
        with progress_bar(views, not console.quiet, f"linear probe: {views:,} views") as step:
            x_train = np.concatenate(
                [embed(train, keep=into[0], advance=step)]
                + ([embed(train, mirror=True, keep=into[0], advance=step)] if mirrors else [])
            )
            x_val = embed(val, keep=into[1], advance=step) if len(val) else None
    maps = _lower_maps(kept, len(train))
    y_train = np.tile(labels[np.sort(train)], 1 + mirrors)
    y_val = labels[np.sort(val)]
    embed_s, passes_s = time.perf_counter() - t0, time.perf_counter() - t1
    with console.status(f"linear probe: choosing its regularisation on {len(x_train):,} views"):
        head = fit_head(net, x_train, y_train, x_val, y_val, class_weight, int(labels.max()) + 1, deadline)
    seconds = time.perf_counter() - t0
    sample = sampled(train, range(n_train)) + ("" if mirrors else ", without their mirror images")
    console.print(
        f"  linear probe: {len(x_train)} training views embedded in {embed_s:.1f}s{sample}, C={head['C']}, "
        f"val accuracy {head['val_acc']:.4f} ({seconds:.1f}s in all)"
    )
    return {
        **head,
        "features": int(x_train.shape[1]),
        "training_views": int(len(x_train)),
        "training_images": int(len(train)),
        "training_images_of": int(n_train),
        "sampled": not mirrors,  # the budget cut the probe short: no time is left to fine-tune
        "seconds": round(seconds, 2),
        # One image through the whole network: what the evaluation after training pays per image
        # (training.budget reserves that time from a budget); the export to ONNX Runtime left out.
        "image_seconds": passes_s / max(1, len(x_train) + (len(x_val) if x_val is not None else 0)),
    }, maps


def _embedder(net, images, mean, std, device, amp, channels_last: bool, fast, keep_lower):
    """embed(rows, mirror=False, keep=None) -> the pooled features of `images[rows]` (sorted rows) or
    of their mirrors, through ONNX Runtime (`fast`, training.ortembed) or else PyTorch; `keep`: a list
    that gets the lower layers' maps (featcache) too."""
    from imgclf.models.forward import normalize, predict_logits

    mean_t, std_t = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))

    def embed(rows: np.ndarray, mirror: bool = False, keep: list | None = None, advance=None) -> np.ndarray:
        rows = np.sort(rows)
        if fast is None:
            with recording(net, keep_lower if keep is not None else None) as got:
                out = predict_logits(_Features(net, mirror), images[rows], mean, std, device, 128, amp, channels_last)
            if keep is not None:
                keep.extend(got)
            if advance is not None:
                advance(len(rows))
            return out
        feats, trimmer = [], Trimmer()
        for s in range(0, len(rows), 128):
            xb = torch.from_numpy(np.ascontiguousarray(images[rows[s : s + 128]])).permute(0, 3, 1, 2)
            # Mirrored as uint8, before normalising: a quarter of the bytes of a float batch to move.
            f, low = fast(normalize(xb.flip(3) if mirror else xb, mean_t, std_t).numpy())
            feats.append(f)
            if keep is not None and low is not None:
                keep.append(low)
            if advance is not None:
                advance(len(xb))
            # Each batch keeps its features and maps between its freed temporaries: without a trim
            # CIFAR-10's probe held 4 GB freed but resident (core.heap).
            trimmer.step()
        return np.concatenate(feats)

    return embed


def _budgeted(embed, train: np.ndarray, n_val: int, labels, left, share: float, seed: int):
    """(the training rows the probe can afford, whether their mirror images too, the time.monotonic()
    its C search must end by) when a time budget leaves `left(seconds an image)` seconds, of which the
    probe takes `share`. The seconds an image are timed on a second batch of 128: ONNX Runtime's first
    run at a batch size allocates (32 images after 8 timed CIFAR-10's at twice the rate of a whole
    pass, 4 against 1.7 ms)."""
    view_s = seconds_each(embed, np.sort(train), warm=128, timed=128)
    allowed = share * left(view_s)
    seconds, deadline = allowed - view_s * n_val, time.monotonic() + allowed
    # Each view is embedded and costs the C search too; an image is two views: it and its mirror.
    per_view = view_s + FIT_VIEW_S * (int(labels.max()) + 1)
    rows = afforded_rows(train, labels, seconds, 2 * per_view, seed)
    if len(rows) == len(train):
        return rows, True, deadline
    # Where all would not fit, twice the images without mirrors: a linear probe learns more from new
    # images than from mirrors of fewer (CIFAR-10, 2m: see docs/benchmarks/budget.md).
    return afforded_rows(train, labels, seconds, per_view, seed), False, deadline


def _lower_maps(kept: tuple[list, list], n_train: int) -> LowerMaps | None:
    """The kept lower-layer maps as (2 views, n_train, ...) training maps and the validation maps. The
    lists are emptied: their batches would hold the maps' memory a second time (CIFAR-10 at 96 px:
    1 GB) through the C search and the epochs."""
    if not kept[0]:
        return None
    shape = kept[0][0].shape[1:]
    train = torch.cat(kept[0]).view(2, n_train, *shape)
    kept[0].clear()
    val = torch.cat(kept[1]) if kept[1] else None
    kept[1].clear()
    return LowerMaps(train, val)


def fit_head(
    net: torch.nn.Module, x_train, y_train, x_val, y_val, class_weight, n_classes: int, deadline: float | None = None
) -> dict:
    """A logistic regression on standardised features (C chosen on the validation features by
    choose_c; `x_val` None or empty: none), folded into `net`'s classifier: the linear probe's and
    each descriptor candidate's head. Returns the leaderboard's val_acc, val_balanced_acc, val_loss, C.
    `deadline` (time.monotonic()): no further C is tried once the next would end past it."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    classes = np.unique(y_train)
    has_val = x_val is not None and len(x_val) > 0
    c, clf, loss, acc, bal = choose_c(
        x_train, y_train, x_val if has_val else None, y_val, mu, sd, class_weight, classes, deadline
    )
    set_head(net, clf, classes, mu, sd, n_classes)
    return {"val_acc": acc, "val_balanced_acc": bal, "val_loss": loss, "C": c}


def choose_c(x_train, y_train, x_val, y_val, mu, sd, class_weight, classes, deadline: float | None = None):
    """The logistic regression, its C chosen on the validation images by the criterion fine-tuning
    will judge by (balanced accuracy when classes are weighted; ties: the lower loss). Returns
    (C, fitted classifier, val loss, val accuracy, val balanced accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    z_train = (x_train - mu) / sd
    weight = None if class_weight is None else {int(k): float(class_weight[k]) for k in classes}
    # One estimator, each C warm-started from the last one's solution (the grid ascends: the
    # weights grow smoothly with C), so lbfgs needs far fewer iterations than from zero.
    reg = LogisticRegression(max_iter=300, class_weight=weight, warm_start=True)
    # One BLAS thread: lbfgs's products are skinny (n x 1280 by 1280 x classes), and threads cost more
    # than they give. flowers5's 6,910 Lite0 features: 6.6 s against 13-16 s on 2 cores; 16,000 x 40
    # classes (synthetic): 20 s against 36 s; 25 s on a 16-core GPU machine before (2026-11-26).
    with threadpool_limits(limits=1, user_api="blas"):
        return _grid(reg, z_train, y_train, x_val, y_val, mu, sd, class_weight, deadline)


def _grid(reg, z_train, y_train, x_val, y_val, mu, sd, class_weight, deadline=None):
    """choose_c's search over C_GRID (or C=1 with no validation images), up to `deadline`."""
    best, took, spent = None, 0.0, 0.0
    for c in C_GRID if x_val is not None else (1.0,):
        late = deadline is not None and time.monotonic() + took > deadline
        if best is not None and late and spent + took > CHEAP_SEARCH_S:
            break  # a time budget's probe: the strongest regularisation tried so far has to do
        t = time.monotonic()
        clf = copy.deepcopy(reg.set_params(C=c).fit(z_train, y_train))
        took = time.monotonic() - t
        spent += took
        if x_val is None:
            best = (c, clf, float("nan"), float("nan"), float("nan"), float("nan"))
            break
        acc, bal, loss = _score(clf, (x_val - mu) / sd, y_val)
        key = bal if class_weight is not None else acc  # the criterion fine-tuning will judge by
        if best is None or key > best[2] or (key == best[2] and loss < best[3]):
            best = (c, clf, key, loss, acc, bal)
    c, clf, _, loss, acc, bal = best
    return c, clf, loss, acc, bal


def _score(clf, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Accuracy, balanced accuracy and cross-entropy (natural log), as training validates."""
    from sklearn.metrics import log_loss

    from imgclf.training.balance import balanced_accuracy

    p = clf.predict_proba(x)
    right = clf.classes_[p.argmax(1)] == y
    return float(right.mean()), balanced_accuracy(right, y), float(log_loss(y, p, labels=clf.classes_))


@torch.no_grad()
def set_head(net: torch.nn.Module, clf, classes: np.ndarray, mu: np.ndarray, sd: np.ndarray, n_classes: int) -> None:
    """Fold the standardisation into the logistic regression and copy it into the classifier."""
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row (the second class's log-odds)
        coef, icpt = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-icpt / 2, icpt / 2])
    w = coef / sd
    b = icpt - w @ mu
    head = net.get_classifier()
    # Every class has training images (train checks), but a missing one would keep a logit far below the rest.
    weight = torch.zeros(n_classes, w.shape[1])
    bias = torch.full((n_classes,), -30.0)
    weight[torch.as_tensor(classes)] = torch.as_tensor(w, dtype=torch.float32)
    bias[torch.as_tensor(classes)] = torch.as_tensor(b, dtype=torch.float32)
    head.weight.copy_(weight.to(head.weight.device))
    head.bias.copy_(bias.to(head.bias.device))
