"""MkDocs hook: publish the committed benchmark chart with the site.

The chart is written by `nox -s bench` into benchmarks/results/, outside the docs folder;
this adds it to the site as `performance/clients.png`, so the Performance page always shows
the committed one and a missing chart fails the strict build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def on_files(files: Files, config: Any) -> Files:
    chart = RESULTS / "clients.png"
    if chart.exists():
        files.append(File.generated(config, "performance/clients.png", abs_src_path=str(chart)))
    return files
