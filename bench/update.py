"""`imgclf update` on flowers5: does a model learn two new classes without forgetting three old ones,
and is an update with shuffled labels refused?

1. v1: daisy, dandelion and rose (HOLD_BACK of each class's photos kept aside), registered as production.
2. update v1 with sunflower + tulip (finetune: warm start, head grown, replay of v1's training data;
   --mode full: the five classes from scratch, the ceiling of an update): accuracy of v1 and v2 on
   v1's frozen test images (the three old classes), the five-class accuracy of v2 on its whole test
   split, v2's answers on the frozen images and two class-incremental bias corrections applied after
   the fact (bias_report), the promotion verdict; `rollback` restores v1.
3. update v1 with the held-back daisy/dandelion/rose photos under shuffled labels, --promote:
   the verdict must refuse it and name the classes that got worse; production must not change.

    flock /tmp/imgclf-heavy.lock timeout 1800 .venv/bin/python bench/update.py [--epochs 16] [--img-size 64]
    ... bench/update.py --reuse --no-shuffled --mode full --name full        # v1 kept from the last run
    .venv/bin/python bench/update.py --analyse /tmp/imgclf-bench-update/runs/v2   # bias_report only
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tarfile
import time
from pathlib import Path

import tables  # bench/tables.py: the results written as CSV

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
OLD, NEW = ("daisy", "dandelion", "rose"), ("sunflower", "tulip")
HOLD_BACK = 0.2


def prepare(root: Path) -> tuple[Path, Path, Path]:
    """old/ (3 classes minus the held-back share), new/ (2 classes), shuffled/ (held-back photos,
    labels permuted): copies, so every folder is an ordinary class-folder dataset."""
    if not (root / "flowers5").is_dir():
        with tarfile.open(SHARED / "flowers5.tar.gz") as tf:
            tf.extractall(root, filter="data")
    src, old, new, shuffled = root / "flowers5", root / "old", root / "new", root / "shuffled"
    for d in (old, new, shuffled):
        shutil.rmtree(d, ignore_errors=True)
    rng = random.Random(0)
    held = []
    for cls in OLD:
        files = sorted((src / cls).iterdir())
        rng.shuffle(files)
        k = int(len(files) * HOLD_BACK)
        held += [(f, cls) for f in files[:k]]
        (old / cls).mkdir(parents=True)
        for f in files[k:]:
            shutil.copy(f, old / cls / f.name)
    for cls in NEW:
        shutil.copytree(src / cls, new / cls)
    labels = [c for _, c in held]
    rng.shuffle(labels)
    for (f, _), label in zip(held, labels):
        (shuffled / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, shuffled / label / f.name)
    wrong = sum(c != lab for (_, c), lab in zip(held, labels))
    print(
        f"data: old {sum(1 for _ in old.rglob('*.jpg'))} photos of {', '.join(OLD)}; new "
        f"{sum(1 for _ in new.rglob('*.jpg'))} of {', '.join(NEW)}; shuffled {len(held)} held-back old-class "
        f"photos ({wrong} with a wrong label)"
    )
    return old, new, shuffled


def old_classes_only(v1_path: Path, v2_path: Path) -> float:
    """v2's accuracy on v1's frozen test images when it may answer only v1's classes: forgetting of
    the old classes' own boundaries, apart from old images now taken for a new look-alike class."""
    import numpy as np

    import imgclf
    from imgclf.data.cache import build_cache
    from imgclf.store.runs import test_split

    v1, v2 = imgclf.load(v1_path), imgclf.load(v2_path)
    paths, y = test_split(v1)
    cache = build_cache(paths, v2.img_size, v2.resize_mode, progress=False)
    probs = v2.predict_proba(cache.images)
    old = np.array([v2.classes.index(c) for c in v1.classes])
    return float((probs[:, old].argmax(1) == y).mean())


def logits_on(model, paths: list[str]):
    from imgclf.data.cache import build_cache

    return model.predict_logits(build_cache(paths, model.img_size, model.resize_mode, progress=False).images)


def bias_report(v1_path: Path, v2_path: Path) -> None:
    """Is v2 biased toward the classes it just learned? Predicted-class counts on v1's frozen test
    images, the head rows' norms (old vs new classes), and two standard class-incremental
    corrections applied after the fact: weight aligning (WA, Zhao et al. 2020: new rows rescaled to
    the old rows' mean norm) and one logit offset for the new classes fitted on v2's val split
    (BiC-style, maximising its class-balanced accuracy)."""
    import numpy as np

    import imgclf
    from imgclf.store.runs import read_splits, test_split
    from imgclf.training.warmstart import classifier_name

    v1, v2 = imgclf.load(v1_path), imgclf.load(v2_path)
    fresh = np.array([c not in v1.classes for c in v2.classes])
    idx = lambda rows: np.array([v2.classes.index(r["label"]) for r in rows])  # noqa: E731
    frozen_paths, y1 = test_split(v1)
    new_rows = [r for r in read_splits(v2_path) if r["split"] == "test" and r["label"] not in v1.classes]
    val_rows = [r for r in read_splits(v2_path) if r["split"] == "val"]
    sets = {
        "frozen old-class test": (logits_on(v2, frozen_paths), np.array([v2.classes.index(v1.classes[k]) for k in y1])),
        "new classes' test slice": (logits_on(v2, [r["path"] for r in new_rows]), idx(new_rows)),
        "val (old + new)": (logits_on(v2, [r["path"] for r in val_rows]), idx(val_rows)),
    }
    frozen_logits, frozen_y = sets["frozen old-class test"]
    counts = np.bincount(frozen_logits.argmax(1), minlength=len(v2.classes))
    print(
        "  v2's answers on the frozen old-class test images: "
        + ", ".join(f"{c} {n}" for c, n in zip(v2.classes, counts))
    )
    w = dict(v2.net.named_modules())[classifier_name(v2.net, len(v2.classes))].weight.detach().float()
    norms = w.flatten(1).norm(dim=1).numpy()
    gamma = float(norms[~fresh].mean() / norms[fresh].mean())
    print(
        "  head row norms: "
        + ", ".join(f"{c} {n:.3f}" for c, n in zip(v2.classes, norms))
        + f"  (WA factor for the new rows: {gamma:.3f})"
    )
    val_logits, val_y = sets["val (old + new)"]
    grid = np.linspace(-3, 3, 121)
    offset = float(grid[np.argmax([balanced_acc(val_logits - d * fresh, val_y) for d in grid])])
    # Without a bias in the head (resnet_fast), WA is exactly the new classes' logits x gamma.
    fixes = {
        "as trained": lambda z: z,
        f"WA (x{gamma:.2f})": lambda z: np.where(fresh, z * gamma, z),
        f"val-fitted offset ({-offset:+.2f} on new)": lambda z: z - offset * fresh,
    }
    rows = []
    for name, fix in fixes.items():
        rows.append([name, *(float((fix(z).argmax(1) == y).mean()) for z, y in sets.values())])
        print(f"  {name:>32}: " + "; ".join(f"{k} {a:.4f}" for k, a in zip(sets, rows[-1][1:])))
    tables.save("bias", ["correction", *sets], rows)


def balanced_acc(logits, y) -> float:
    import numpy as np

    pred = logits.argmax(1)
    return float(np.mean([(pred[y == k] == k).mean() for k in np.unique(y)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/imgclf-bench-update")
    ap.add_argument("--model", default="resnet_fast", help="v1's model, e.g. timm/resnet18 with --weights")
    ap.add_argument("--weights", default=None, help="v1's pretrained weights (a timm model's file or folder)")
    ap.add_argument("--img-size", type=int, default=64, help="v1's input size (0: imgclf's default)")
    ap.add_argument("--epochs", type=int, default=16, help="v1's epochs (0: imgclf's default)")
    ap.add_argument("--update-epochs", type=int, default=None, help="[default: imgclf update's]")
    ap.add_argument("--lr-factor", type=float, default=None, help="[default: imgclf update's]")
    ap.add_argument("--reuse", action="store_true", help="Reuse ROOT/runs/v1 from an earlier run of this script")
    ap.add_argument("--no-shuffled", action="store_true", help="Skip step 3 (the shuffled-label update)")
    ap.add_argument(
        "--mode",
        default="finetune",
        choices=("finetune", "full"),
        help="the update's mode (full: five classes from scratch, the joint-training ceiling)",
    )
    ap.add_argument("--name", default="v2", help="ROOT/runs/NAME: the update's run folder")
    ap.add_argument(
        "--analyse", metavar="RUN", help="Only print the bias report of an updated RUN against ROOT/runs/v1"
    )
    tables.add_csv_dir(ap)
    args = ap.parse_args()

    import imgclf
    from imgclf.store import registry

    root = Path(args.root)
    if args.analyse:
        bias_report(root / "runs" / "v1", Path(args.analyse))
        return
    old, new, shuffled = prepare(root)
    reuse = args.reuse and (root / "runs" / "v1" / "model.json").is_file()
    for d in ([f"runs/{args.name}", "runs/v3"] if reuse else ["runs"]) + ["registry"]:
        shutil.rmtree(root / d, ignore_errors=True)
    reg = root / "registry"
    settings = dict(
        model=args.model, img_size=args.img_size or None, seed=0, **({"weights": args.weights} if args.weights else {})
    )
    extra = {"lr_factor": args.lr_factor} if args.lr_factor else {}

    t = time.perf_counter()
    if reuse:  # prepare() is seeded: the same old/ folder, so v1's recorded files are all still there
        path = root / "runs" / "v1"
        from imgclf.api import Run

        v1 = Run(path, json.loads((path / "metrics.json").read_text()), None)
    else:
        v1 = imgclf.train(old, out=root / "runs" / "v1", epochs=args.epochs or None, verbose=False, **settings)
    t_v1 = time.perf_counter() - t
    registry.add(v1.path, reg, alias="production")
    print(
        f"v1: {len(OLD)} classes, test accuracy "
        f"{v1.metrics['accuracy']:.4f} (n={v1.metrics.get('n')}), {'reused' if reuse else f'{t_v1:.0f} s'}"
    )

    t = time.perf_counter()
    r = imgclf.update(
        "production",
        new,
        registry=reg,
        out=root / "runs" / args.name,
        epochs=args.update_epochs,
        mode=args.mode,
        verbose=True,
        **extra,
    )
    t_v2 = time.perf_counter() - t
    m2 = json.loads((root / "runs" / args.name / "metrics.json").read_text())
    old_slice = r["slices"]["test split"]
    print(f"\nv2 ({args.mode}, +{', '.join(NEW)}): {t_v2:.0f} s")
    print(f"  v1 on the frozen 3-class test images: {old_slice['a']:.4f}  (n={old_slice['n']})")
    print(
        f"  v2 on the same images:                {old_slice['b']:.4f}  "
        f"({100 * (old_slice['b'] - old_slice['a']):+.1f} points)"
    )
    only_old = old_classes_only(v1.path, r["run"])
    print(f"  v2 on the same images, answering only the 3 old classes: {only_old:.4f}")
    print(
        f"  v2 on the new classes' test slice:    {r['slices']['new data']['b']:.4f}  (n={r['slices']['new data']['n']})"
    )
    print(f"  v2 five-class accuracy (old frozen + new test slice): {m2['accuracy']:.4f} (n={m2.get('n')})")
    bias_report(v1.path, Path(r["run"]))
    print(f"  verdict: {'PROMOTE' if r['verdict']['promote'] else 'KEEP'}: {r['verdict']['paragraph']}")
    registry.promote(reg, r["version"])
    back = registry.rollback(reg)
    print(f"  promote then rollback: production {back['from']} -> {back['to']}")
    # No table is printed: the numbers above (and below, for v3) as (quantity, value) rows.
    summary = [
        ("v1 test accuracy", v1.metrics["accuracy"]),
        ("v1 seconds", None if reuse else t_v1),
        ("update mode", args.mode),
        ("v2 seconds", t_v2),
        ("v1 on frozen old-class test", old_slice["a"]),
        ("v2 on frozen old-class test", old_slice["b"]),
        ("frozen old-class test n", old_slice["n"]),
        ("v2 on frozen, old classes only", only_old),
        ("v2 on new classes' test slice", r["slices"]["new data"]["b"]),
        ("v2 five-class accuracy", m2["accuracy"]),
        ("v2 promote verdict", bool(r["verdict"]["promote"])),
        ("rollback from", back["from"]),
        ("rollback to", back["to"]),
    ]
    tables.save("summary", ["quantity", "value"], summary)

    if args.no_shuffled:
        return
    t = time.perf_counter()
    before = registry.version_number(reg, "production")
    s = imgclf.update(
        "1",
        shuffled,
        registry=reg,
        out=root / "runs" / "v3",
        epochs=args.update_epochs,
        promote=True,
        verbose=True,
        **extra,
    )
    t_v3 = time.perf_counter() - t
    after = registry.version_number(reg, "production")
    so = s["slices"]["test split"]
    print(f"\nv3 (finetune on {sum(s['counts']['new'].values())} shuffled-label photos, --promote): {t_v3:.0f} s")
    print(f"  frozen 3-class test: v1 {so['a']:.4f} -> v3 {so['b']:.4f}")
    print(f"  promoted: {s['promoted']}; production {before} -> {after}")
    print(f"  classes that got worse: {', '.join(f'{c} ({d:+.1%}, {w})' for c, d, w in s['worse_classes']) or 'none'}")
    print(f"  verdict: {s['verdict']['paragraph']}")
    summary += [
        ("v3 seconds", t_v3),
        ("v3 on frozen old-class test", so["b"]),
        ("v3 promoted", s["promoted"]),
        ("production before v3", before),
        ("production after v3", after),
        ("classes that got worse", "; ".join(c for c, _, _ in s["worse_classes"])),
    ]
    tables.save("summary", ["quantity", "value"], summary)
    print(
        f"\nsummary: v1 {old_slice['a']:.4f} -> v2 {old_slice['b']:.4f} on the frozen old-class test "
        f"(target: within 2 points); v2 five-class {m2['accuracy']:.4f}; shuffled update "
        f"{'refused' if not s['promoted'] else 'PROMOTED (unexpected)'}; times v1 "
        f"{'reused' if reuse else f'{t_v1:.0f} s'}, update {t_v2:.0f} s"
    )


if __name__ == "__main__":
    main()
