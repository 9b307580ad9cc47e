"""mkdocs hooks: the shipped reports' figures become part of the site.

The pages show figures that the harness wrote into `reports/` (training curves, work-precision
diagrams, the scaling figure); they are not copied into `docs/`, so that a regenerated report
needs no second copy. This hook adds every `reports/**/*.png` to the site under `reports/`, so a
page links to `reports/seed/training_curve.png` relative to the docs root, and `mkdocs build
--strict` fails on a figure that no report holds.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def on_files(files, config):
    for png in sorted((ROOT / "reports").rglob("*.png")):
        files.append(File(str(png.relative_to(ROOT)), src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files
