"""What the command line prints: tables, summaries and JSON for each command's result. The
commands in cli/ compute nothing; they call imgclf.api and hand the result here."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys


def print_json(obj) -> None:
    """JSON has no NaN or Infinity: a non-finite number prints as null, so the output always parses."""
    print(json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False))


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def none_read(results: list[dict] | int, errors: int | None = None) -> None:
    """After a command printed its answers (or wrote them): when it was given images and could read
    none of them, one error line and exit 2, so `imgclf predict RUN photo.jpg && ...` stops there. A
    few unreadable among others stay rows with their reason (exit 0). `results`: the answers, each
    with "error" when unreadable, or the count of images answered (with `errors`, the unreadable)."""
    from imgclf.core.errors import UserError

    n = results if isinstance(results, int) else len(results)
    bad = errors if errors is not None else sum("error" in r for r in results)
    if n and bad == n:
        raise UserError(f"none of the {n:,} image{'s' * (n != 1)} could be read (the reasons are above)")


def predictions(results: list[dict], format: str, top_k: int) -> None:
    """`imgclf predict` on images: a table, JSON or CSV (the batch CSV's columns)."""
    if format == "json":
        print_json(results)
        return
    if format == "csv":
        from imgclf.inference.batch import COLUMNS, csv_row

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)  # label applies the run's threshold
        for r in results:
            w.writerow(csv_row(r))
        print(buf.getvalue(), end="")
        return
    from rich.console import Console
    from rich.markup import escape  # paths, labels and reasons are the user's text: "photo[1].jpg", "[heic]"
    from rich.table import Table

    table = Table("path", "label", "confidence", *(["top-k"] if top_k > 1 else []))
    table.columns[0].overflow = "fold"  # show whole paths, wrapped, never "…"-truncated
    for r in results:
        path = escape(str(r.get("path", "")))
        if "error" in r:
            table.add_row(path, "[red]unreadable[/]", escape(r["error"]), *([""] if top_k > 1 else []))
        else:
            extra = [escape(", ".join(f"{c} {p:.3f}" for c, p in r["top_k"]))] if top_k > 1 else []
            table.add_row(path, escape(r["label"]), f"{r['confidence']:.4f}", *extra)
    Console(soft_wrap=True).print(table)


def comparison(r: dict) -> None:
    """`imgclf compare`: per evaluation slice a table of A, B and B - A, then the verdict."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape  # class names and paths are the user's text
    from rich.table import Table

    console = Console(highlight=False)
    ci = lambda e: f"{e['ci'][0]:.1%} to {e['ci'][1]:.1%}"  # noqa: E731
    for where, s in r["slices"].items():
        t = Table(
            title=f"{where} ({s['n']} images; {s['mcnemar']['b01']} fixed, {s['mcnemar']['b10']} broken, "
            f"McNemar p={s['mcnemar']['p_value']:.3g})",
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        for col in ("", "A", "B", "B - A"):
            t.add_column(col, no_wrap=True)
        acc = s["accuracy"]
        t.add_row(
            "accuracy",
            *(f"{acc[k]['value']:+.1%}" if k == "diff" else f"{acc[k]['value']:.1%}" for k in ("a", "b", "diff")),
        )
        t.add_row("  95% CI", ci(acc["a"]), ci(acc["b"]), ci(acc["diff"]))
        t.add_row("ECE", f"{s['ece']['a']:.3f}", f"{s['ece']['b']:.3f}", f"{s['ece']['b'] - s['ece']['a']:+.3f}")
        for c, rc in s["per_class"].items():
            t.add_row(f"recall {escape(c)}", f"{rc['a']:.1%}", f"{rc['b']:.1%}", f"{rc['diff']:+.1%}")
        console.print(t)
        if left := s.get("left_out"):
            from imgclf.evaluation.elsewhere import left_out_line

            console.print(escape(left_out_line(left, "neither model knows")))
    v = r["verdict"]
    console.print(
        f"[bold {'green' if v['promote'] else 'yellow'}]{'PROMOTE' if v['promote'] else 'KEEP'}[/]  "
        + escape(f"{v['paragraph']}\n(written to {r['path']})")
    )


def feedback_imported(r: dict) -> None:
    from imgclf.store.labels import shown

    for label, c in r["labels"].items():
        new = "  (not a class of the model: proposed new class)" if c["known_class"] is False else ""
        print(f"  {label}: {c['added']} added, {c['already there']} already there, {c['relabelled']} relabelled{new}")
    for s in r["skipped"][:20]:
        print(f"  skipped {shown(s['path'])}: {s['reason']}")
    if len(r["skipped"]) > 20:
        print(f"  ... and {len(r['skipped']) - 20} more skipped")
    print(
        f"{r['added']} added, {r['already there']} already there, {r['relabelled']} relabelled, "
        f"{len(r['skipped'])} skipped -> inbox {r['inbox']}"
    )


def feedback_summary(s: dict, where, format: str) -> None:
    if format == "json":
        print_json(s)
        return
    if not s["images"]:
        # the absolute path: "inbox inbox is empty" does not say which folder was looked in
        print(
            f"the inbox {os.path.abspath(where)} is empty; add feedback with: imgclf feedback import FOLDER, "
            "or POST /feedback (a service given --inbox: give the same --inbox here)"
        )
        return
    for label, n in s["labels"].items():
        print(f"  {label}: {n}" + ("  (proposed new class)" if label in s["proposed"] else ""))
    print(
        f"inbox {where}: {s['images']} images, {len(s['labels'])} labels, {s['feedback']} feedback records, "
        f"latest {s['last'] or '-'}"
    )


def explanations(results: list[dict], method: str) -> None:
    layer = next((r["layer"] for r in results if "layer" in r), None)
    if layer is not None:
        print(f"target layer: {layer}, chosen automatically (the last spatial feature map)", file=sys.stderr)
    for r in results:
        if "error" in r:
            print(f"skipped {r['path']}: {r['error']}", file=sys.stderr)
        else:
            print(f"{r['overlay']}  {r['label']} {r['confidence']:.2f}  ({method} for '{r['target']}')")


def scans(results: list[dict]) -> None:
    # A photo enlarged to the detector's input is answered at a higher threshold (detection.detector):
    # said beside its score, where "absent, score 0.2" would read wrong against the usual 0.12.
    lowest = min((r["threshold"] for r in results if "threshold" in r), default=None)
    for r in results:
        if "error" in r:
            print(f"skipped {r['path']}: {r['error']}", file=sys.stderr)
            continue
        boxes = " ".join(
            f"[{b['x1']:.0f},{b['y1']:.0f},{b['x2']:.0f},{b['y2']:.0f} {b['score']:.2f}]" for b in r["boxes"][:10]
        )
        # A detector's answer counts its people; a crop-model scan's says how many windows it scored.
        work = f"{r['windows']} windows, " if "windows" in r else ""
        n = len(r["boxes"])
        found = f"{n} box{'' if n == 1 else 'es'}" + (f" {boxes}" if boxes else "")
        at = f" (at {r['threshold']:g}: enlarged)" if r.get("threshold", lowest) != lowest else ""
        print(
            f"{r.get('path', '')}  {'present' if r['present'] else 'absent'}  score {r['score']:.3f}{at}  "
            f"{found}  ({work}{r['seconds']:.2f}s)"
        )


def monitor_summary(result: dict, console=None) -> None:
    """The CLI's output: a table of the statistics, the verdict, where everything went."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape  # the verdict names classes; paths are the user's
    from rich.table import Table

    from imgclf.evaluation import drift

    console = console or Console(highlight=False, soft_wrap=True)
    s = result["statistics"]
    t = Table(box=box.SIMPLE_HEAD)
    for col in ("statistic", "test set", "live", "PSI", "p", "shifted"):
        t.add_column(col, no_wrap=True)

    def fmt(st: dict, how: str | None, side: str) -> str:
        v = drift.side_value(st, how, side)
        return "-" if v is None else v

    rows = [
        ("predicted_class", "predicted classes", None),
        ("confidence", "confidence (median)", "median"),
        ("low_confidence", f"below {result['low_confidence']['threshold']:.2g}", "rate"),
        ("unknown", "'unknown'", "rate"),
        ("brightness", "brightness (mean)", "mean"),
        ("image_area", "size (median)", "size"),
        ("colour_mode", "colour modes", None),
    ]
    for key, name, how in rows:
        if (st := s.get(key)) is None:
            continue
        psi, p = st.get("psi"), st.get("p_value")
        t.add_row(
            name,
            fmt(st, how, "ref"),
            fmt(st, how, "live"),
            "-" if psi is None else f"{psi:.3f}",
            "-" if p is None else f"{p:.2g}",
            "[bold red]yes[/]" if st["shifted"] else "no",
        )
    console.print(t)
    color = {"drift": "bold red", "no_drift": "bold green"}.get(result["status"], "bold yellow")
    head, _, rest = result["verdict"].partition(":")
    console.print(f"[{color}]{head}:[/]{escape(rest)}")
    console.print(escape(f"report: {result['paths']['html']}  (and {result['paths']['json']})"))
    if result["to_label"]:
        console.print(
            escape(
                f"to label: {len(result['to_label'])} images in {result['paths']['to_label']}/ "
                f"(listed in {result['paths']['to_label_csv']}); sort them into "
                f"{result['paths']['to_label']}/<class>/ folders, then: {result['import_command']}"
            )
        )


def registry_versions(versions: list[dict], console=None) -> None:
    """The `imgclf registry list` table. Piped output gets a wide console: no cell is cut to "…" in a log."""
    import sys

    from rich import box
    from rich.console import Console
    from rich.markup import escape  # run folders are the user's paths
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 200)
    # Sized for an 80-column terminal; `imgclf registry show` has the rest (macro F1, user, manifest).
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for name in ("version", "aliases", "accuracy", "classes", "parent", "created"):
        table.add_column(name, no_wrap=name != "aliases")  # short cells stay whole; long ones wrap or fold
    table.add_column("run", overflow="fold", min_width=12)
    for v in versions:
        acc = (v.get("metrics") or {}).get("accuracy")
        run = v["run"] if v["run_exists"] else f"{v['run']} (missing)"
        table.add_row(
            str(v["version"]),
            ", ".join(v["aliases"]),
            f"{acc:.4f}" if acc is not None else "-",
            str(len(v["classes"])),
            str(v["parent"] or "-"),
            v["created"][:16].replace("T", " "),
            escape(run),
        )
    console.print(table)


def models(result: dict, console) -> None:
    from rich.box import SIMPLE_HEAD
    from rich.markup import escape  # a local weights file is the user's path
    from rich.table import Table

    # No outer border and no vertical lines: a row stays one line in an 80-column terminal.
    table = Table(
        "model",
        "params",
        f"GFLOPs@{result['size']}",
        "pretrained",
        "weights here",
        box=SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    table.columns[0].no_wrap = True
    table.columns[3].max_width, table.columns[3].overflow = 12, "ellipsis"  # a long tag: its start says enough
    table.columns[3].no_wrap, table.columns[4].min_width = True, len("yes: --model lite0")
    table.columns[4].overflow = "fold"  # a whole path, wrapped
    for r in result["rows"]:
        tags = r["pretrained_tags"]
        published = "–" if not tags else f"{r['default_tag']}" + (f" +{len(tags) - 1}" if len(tags) > 1 else "")
        here = (
            "built in"
            if not r["name"].startswith("timm/")
            else (
                f"yes: --model {r['short_name']}"
                if r["package"]
                else f"yes: {escape(str(r['local_weights']))}"
                if r["local_weights"]
                else "no"
                if tags
                else "–"
            )
        )
        table.add_row(
            r["name"], _millions(r["params"]), "?" if r["gflops"] is None else f"{r['gflops']:.2f}", published, here
        )
    console.print(table)
    if result["shown"] < result["matched"]:
        console.print(f"showing {result['shown']} of {result['matched']} matches: narrow PATTERN or raise --limit")
    if not result["pattern"]:
        console.print("any timm architecture works: --model timm/<name>; find one: imgclf models PATTERN")


def _millions(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.2f}M"


def print_table(headers: list[str], rows: list[list]) -> None:
    """Plain aligned columns (readable, and greppable when piped)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
