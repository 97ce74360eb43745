"""The latency histogram PNG of a benchmark run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

from codey.benchmark.runner import Sample


def latency_histogram(samples: list[Sample], bare: list[Sample], path: Path) -> None:
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
