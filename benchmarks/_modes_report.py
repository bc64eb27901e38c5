"""Tables and goal lines of ``bench_automatic.py modes`` from the workers' figures (see ``_automatic_modes``)."""

from __future__ import annotations

import statistics
from typing import Any

#: Row titles, in table order.
TITLES = {
    "baseline": "Otsu + watershed (scikit-image)",
    "ais": "AIS: segment(image)",
    "apg": "APG: segment(image, mode='apg')",
    "amg": "AMG: segment(image, mode='amg'), 32x32, nuclei preset",
    "linked": "AIS per slice + link_slices: segment(stack)",
    "watershed3d": "AIS, one 3D watershed over the stacked maps",
    "baseline3d": "Otsu + 3D watershed (bench_3d.baseline)",
}


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return statistics.median(values) if values and len(values) == len(rows) else None


def summarize(cell: dict[str, Any], embeddings: dict[tuple[str, int], float]) -> dict[str, Any]:
    """One row of figures of a cell; ``embeddings``: ``{(set, seed): embedding s}`` for methods without one."""
    rows = cell["images"]
    embed = [r.get("embed_s", embeddings.get((cell["set"], r["seed"]))) for r in rows]
    ratios = [r["total_s"] / e for r, e in zip(rows, embed, strict=True) if e]
    return {
        "method": cell["method"],
        "set": cell["set"],
        "images": len(rows),
        "total_s": _median(rows, "total_s"),
        "embed_s": _median(rows, "embed_s"),
        "maps_s": _median(rows, "maps_s"),
        "labels_s": _median(rows, "labels_s"),
        "ratio": statistics.median(ratios) if len(ratios) == len(rows) else None,
        "f1_50": statistics.mean(r["f1"][0] for r in rows),
        "f1_mean": statistics.mean(statistics.mean(r["f1"]) for r in rows),
        "found": sum(r["n_pred"] for r in rows),
        "true": sum(r["n_true"] for r in rows),
        "peak_rss_mib": cell["peak_rss_mib"],
    }


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _times(ratio: float | None) -> str:
    """A ratio as ``12×``, ``3.4×`` or ``0.05×``."""
    if ratio is None:
        return "—"
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.1f}×" if ratio >= 0.1 else f"{ratio:.2f}×"


def _table(rows: list[dict[str, Any]], stack: bool) -> None:
    unit = "stacks" if stack else "images"
    embed = "stack embedding s" if stack else "embedding s"
    labels = "watershed s" if stack else "labels s"
    print(
        f"| method | {unit} | total s | {embed} | maps s | {labels} | total / embedding | F1@0.5 | "
        "mean F1 .5:.95 | found / true | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {TITLES[r['method']]} | {r['images']} | {_fmt(r['total_s'])} | {_fmt(r['embed_s'])} | "
            f"{_fmt(r['maps_s'])} | {_fmt(r['labels_s'])} | {_times(r['ratio'])} | "
            f"{r['f1_50']:.3f} | {r['f1_mean']:.3f} | "
            f"{r['found']} / {r['true']} | {r['peak_rss_mib']:.0f} |"
        )


def _per_image(
    cells: list[dict[str, Any]], method: str, key: str, sets: list[str]
) -> dict[tuple[str, int], Any]:
    return {
        (c["set"], r["seed"]): r[key] if key != "f1" else r["f1"][0]
        for c in cells
        if c["method"] == method and c["set"] in sets
        for r in c["images"]
        if key in r
    }


def _mean_f1(cells: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """``{(method, preset): mean F1@0.5 over every image of that preset, all sizes}``."""
    scores: dict[tuple[str, str], list[float]] = {}
    for c in cells:
        scores.setdefault((c["method"], c["set"].split()[0]), []).extend(r["f1"][0] for r in c["images"])
    return {k: statistics.mean(v) for k, v in scores.items() if v}


def goal_lines(cells: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals, each ``{"goal", "measured", "passed"}`` (``passed`` None: not measured)."""
    goals: list[dict[str, Any]] = []

    def add(goal: str, measured: str | None, passed: bool | None) -> None:
        if measured is None:
            measured, passed = "not measured", None
        goals.append({"goal": goal, "measured": measured, "passed": passed})

    sets_512 = sorted({c["set"] for c in cells if c["set"].endswith(" 512x512")})
    total = _per_image(cells, "ais", "total_s", sets_512)
    embed = _per_image(cells, "ais", "embed_s", sets_512)
    ratios = [total[k] / embed[k] for k in total if k in embed]
    ratio = statistics.median(ratios) if ratios else None
    add(
        "2D 512²: segment(image) <= 8x one embedding",
        None
        if ratio is None
        else f"median {ratio:.1f}× over {len(ratios)} images ({', '.join(f'{r:.1f}' for r in ratios)})",
        ratio is not None and ratio <= 8,
    )
    amg = _per_image(cells, "amg", "total_s", sets_512)
    speedups = [amg[k] / total[k] for k in amg if k in total]
    speedup = statistics.median(speedups) if speedups else None
    add(
        "2D 512²: segment(image) >= 50x faster than AMG on the same image",
        None
        if speedup is None
        else f"median {speedup:.0f}× over {len(speedups)} images ({', '.join(f'{s:.0f}' for s in speedups)})",
        speedup is not None and speedup >= 50,
    )
    for method, what in (("linked", "segment(stack)"), ("watershed3d", "the 3D watershed")):
        row = next((r for r in rows if r["method"] == method), None)
        ratio = row["ratio"] if row else None
        add(
            f"3D: {what} <= 3x the stack's embedding",
            None if ratio is None else f"{ratio:.1f}×",
            ratio is not None and ratio <= 3,
        )
    mean = _mean_f1(cells)
    for preset, margin in (("nuclei", 0.05), ("wide", 0.0)):
        ais, base, apg = mean.get(("ais", preset)), mean.get(("baseline", preset)), mean.get(("apg", preset))
        add(
            f"{preset}: AIS F1@0.5 " + (f">= baseline + {margin}" if margin else "> baseline"),
            None
            if ais is None or base is None
            else f"AIS {ais:.3f} vs baseline {base:.3f} ({ais - base:+.3f})",
            ais is not None and base is not None and (ais >= base + margin if margin else ais > base),
        )
        add(
            f"{preset}: APG F1@0.5 >= AIS",
            None if apg is None or ais is None else f"APG {apg:.3f} vs AIS {ais:.3f} ({apg - ais:+.3f})",
            apg is not None and ais is not None and apg >= ais,
        )
    base = mean.get(("baseline3d", "nuclei_3d"))
    for method, what in (("linked", "segment(stack)"), ("watershed3d", "the 3D watershed")):
        auto = mean.get((method, "nuclei_3d"))
        add(
            f"3D: {what} F1@0.5 > the 3D baseline",
            None if auto is None or base is None else f"{auto:.3f} vs {base:.3f} ({auto - base:+.3f})",
            auto is not None and base is not None and auto > base,
        )
    return goals


def print_report(
    cells: list[dict[str, Any]], machine: dict[str, Any], decoder: str, args: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Print the header, one table per image set and the goals; returns the rows and the goals."""
    embeddings = {}
    for c in cells:  # the baselines' ratios use the embedding of the same image by the model's methods
        for r in c["images"]:
            if "embed_s" in r:
                embeddings.setdefault((c["set"], r["seed"]), r["embed_s"])
    rows = [summarize(c, embeddings) for c in cells]
    print(
        f"\ncpu {machine['cpu']} ({machine['cpus']} CPUs), torch {machine['torch']}, napari_sam "
        f"{machine['napari_sam']}, torch threads {machine['threads']}, load average "
        f"{machine['load_average_start'][0]:.1f} at the start, {machine['load_average_end'][0]:.1f} at the end"
    )
    print(f"nano + instance decoder: {decoder}")
    print(
        f"times: median of {args.runs} run(s) per image (AMG: 1 run on {args.amg_images} image(s) per set), "
        "then median over images; embedding included in every total; peak RSS: ru_maxrss growth in a "
        "subprocess per method"
    )
    order = list(TITLES)
    for key in dict.fromkeys(r["set"] for r in rows):
        stack = key.startswith("nuclei_3d")
        seeds = f"seeds {args.first_seed}+"
        print(f"\n### {'3D stack' if stack else '2D'} {key} ({seeds})\n")
        _table(sorted((r for r in rows if r["set"] == key), key=lambda r: order.index(r["method"])), stack)
    goals = goal_lines(cells, rows)
    print("\n### Goals (issue 18)\n")
    for g in goals:
        verdict = {True: "PASS", False: "FAIL", None: "----"}[g["passed"]]
        print(f"{verdict}  {g['goal']}: {g['measured']}")
    for r in rows:
        r["title"] = TITLES[r["method"]]
    return rows, goals
