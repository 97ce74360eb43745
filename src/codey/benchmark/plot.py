"""The latency histogram PNG of a benchmark run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codey.benchmark.runner import Sample


def _pyplot() -> Any:
    """matplotlib, loaded when a plot is drawn: it takes a second, which every other `codey`
    command would pay at start."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    from matplotlib import pyplot

    return pyplot


def latency_histogram(samples: list[Sample], bare: list[Sample], path: Path) -> None:
    plt = _pyplot()
    services = sorted({s.service for s in samples})
    figure, axes = plt.subplots(1, len(services), figsize=(4.2 * len(services), 3.4), squeeze=False)
    for ax, service in zip(axes[0], services, strict=True):
        ours = [s.seconds for s in samples if s.service == service and s.ok]
        base = [s.seconds for s in bare if s.service == service]
        bins = max(5, min(20, len(ours)))
        ax.hist(base, bins=bins, alpha=0.6, label="bare engine", color="#999999")
        ax.hist(ours, bins=bins, alpha=0.7, label="codey", color="#2f6fde")
        ax.set_title(service)
        ax.set_xlabel("latency (s)")
        ax.set_ylabel("requests")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def throughput_by_streams(rows: list[dict[str, Any]], path: Path) -> None:
    plt = _pyplot()
    """Aggregate tokens/s against concurrent streams, codey beside the bare engine."""
    figure, ax = plt.subplots(figsize=(5.2, 3.6))
    streams = [r["streams"] for r in rows]
    ax.plot(streams, [r["tokens_per_s"] for r in rows], "o-", color="#2f6fde", label="codey")
    if all("bare_tokens_per_s" in r for r in rows):
        bare = [r["bare_tokens_per_s"] for r in rows]
        ax.plot(streams, bare, "s--", color="#999999", label="bare engine, batched")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate tokens/s")
    ax.set_xticks(streams)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
