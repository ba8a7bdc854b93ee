"""The table and plots of benchmarks/peers.py, from its JSON document."""

from __future__ import annotations

from pathlib import Path

# (result key, row label, what the cell shows when the figure is missing and a note says why)
ROWS = [
    ("version", "version", ""),
    ("enqueue_one_per_s", "enqueue one-by-one, jobs/s", ""),
    ("enqueue_bulk_per_s", "enqueue bulk, jobs/s", ""),
    ("drain_per_s", "drain, jobs/s", ""),
    ("drain_recycled_per_s", "drain recycling every 100, jobs/s", "none"),
    ("recycled_ratio", "  recycling / plain", ""),
    ("pickup_p50_ms", "idle pickup p50, ms", ""),
    ("pickup_p90_ms", "idle pickup p90, ms", ""),
    ("kill_p50_ms", "C-busy kill past deadline p50, ms", ""),
    ("worker_pss_mib", "idle worker PSS, MiB", ""),
    ("all_pss_mib", "all its processes PSS, MiB", ""),
    ("processes", "  processes", ""),
]
# the step whose failure leaves each figure empty
STEPS = {"enqueue_one_per_s": "enqueue one-by-one", "enqueue_bulk_per_s": "enqueue bulk", "drain_per_s": "drain",
         "drain_recycled_per_s": "drain recycled", "pickup_p50_ms": "pickup", "pickup_p90_ms": "pickup",
         "kill_p50_ms": "kill", "worker_pss_mib": "memory", "all_pss_mib": "memory", "processes": "memory"}


def note_key(key: str) -> str:
    return key.removesuffix("_per_s").removesuffix("_p50_ms") + "_note"


def marked(result: dict, key: str) -> str:
    """"*" where a throughput figure has a note (a drain that did not finish)."""
    return "*" if key.endswith("_per_s") and result.get(note_key(key)) else ""


def bar_text(value: float, result: dict, key: str) -> str:
    return (f"{value:,.0f}" if value >= 10 else f"{value:.2g}") + marked(result, key)


def cell(result: dict, key: str, missing: str) -> str:
    value = result.get(key)
    if value is not None:
        text = f"{value:,}" if isinstance(value, int) else str(value)
        return text + marked(result, key)
    if key == "kill_p50_ms" and result.get("kill_summary"):
        return result["kill_summary"]
    errors = result.get("errors", {})
    if "start" in errors or STEPS.get(key) in errors:
        return "error"
    if missing and result.get(note_key(key)):
        return missing
    return "-"


def table(document: dict) -> str:
    results = document["results"]
    machine = document["machine"]
    lines = [f"jobrt and its peers: {document['jobs']} no-op jobs, {document['workers']} worker processes each; "
             f"{machine['cores']} cores ({machine['cpu']}), Linux {machine['kernel']}, "
             f"Python {machine['python']}, {document['date']}"]
    width = max(len(label) for _, label, _ in ROWS) + 2
    columns = [2 + max(len(result["peer"]), *(len(cell(result, key, missing)) for key, _, missing in ROWS))
               for result in results]
    lines.append(" " * width + "".join(f"{r['peer']:>{w}}" for r, w in zip(results, columns)))
    for key, label, missing in ROWS:
        lines.append(f"{label:<{width}}" + "".join(f"{cell(r, key, missing):>{w}}" for r, w in zip(results, columns)))
    lines.append("notes (* marks a figure with a note):")
    for result in results:
        notes = [result.get("started_as"), result.get("bulk_api") and f"bulk: {result['bulk_api']}"]
        notes += [result[key] for key in sorted(result) if key.endswith("_note")]
        notes += [f"{step} failed: {error}" for step, error in result.get("errors", {}).items()]
        lines.append(f"  {result['peer']}: " + "; ".join(note for note in notes if note))
    return "\n".join(lines)


def plot(document: dict, directory: Path) -> list[Path]:
    """Two PNGs: throughput (enqueue, drain, recycled drain; log scale) and latency (idle
    pickup, C-busy kill; log scale), a group of bars per peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    results = document["results"]
    peers = [result["peer"] for result in results]
    title = (f"{document['jobs']} no-op jobs, {document['workers']} workers each, "
             f"{document['machine']['cores']} cores, {document['date'][:10]}")
    figures = [
        ("peers-throughput.png", "jobs/s (log scale, higher is better)",
         [("enqueue_one_per_s", "enqueue one-by-one"), ("enqueue_bulk_per_s", "enqueue bulk"),
          ("drain_per_s", "drain"), ("drain_recycled_per_s", "drain, recycling every 100")]),
        ("peers-latency.png", "ms (log scale, lower is better)",
         [("pickup_p50_ms", "idle pickup p50"), ("kill_p50_ms", "C-busy kill past its deadline, p50")]),
    ]
    written = []
    for filename, ylabel, series in figures:
        fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
        width = 0.8 / len(series)
        for index, (key, label) in enumerate(series):
            xs = [p + (index - (len(series) - 1) / 2) * width for p in range(len(peers))]
            values = [result.get(key) for result in results]
            bars = ax.bar([x for x, v in zip(xs, values) if v], [max(v, 0.01) for v in values if v], width,
                          label=label)
            ax.bar_label(bars, labels=[bar_text(v, r, key) for v, r in zip(values, results) if v],
                         fontsize=7, rotation=90, padding=2)
            for x, value, result in zip(xs, values, results):
                if not value:  # what the table says instead, at the foot of the axis
                    ax.text(x, 0.02, cell(result, key, "none"), transform=ax.get_xaxis_transform(),
                            rotation=90, ha="center", va="bottom", fontsize=7, color="dimgrey")
        ax.set_yscale("log")
        ax.set_xticks(range(len(peers)), peers)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        ax.margins(y=0.25)
        fig.tight_layout()
        path = directory / filename
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written
