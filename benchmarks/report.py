"""The report: table cells and tables, the header line about the machine and the run, and
writing benchmarks/results.md and README.md's "## Benchmarks" section."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from .inputs import ROOT
from .jobs import Result

# ---------------------------------------------------------------------------- cells


def fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def fmt_int(x: Any) -> str:
    return "–" if x is None else f"{int(x):,}"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def fmt_ratio(a: Any, b: Any) -> str:
    if not a or not b:
        return "–"
    r = a / b
    return f"{r:.2g}×" if r < 10 else f"{r:.0f}×"


def exact_cell(r: Result) -> str:
    if r.checked is None:
        return "–" if r.ok else r.status or "–"
    cell = f"{r.exact}/{r.checked}"
    if r.skipped:
        cell += f" ({r.skipped} skipped)"
    return cell


def status_cell(r: Result) -> str | None:
    """None when the compile succeeded; otherwise what to show instead of numbers."""
    if r.ok:
        return None
    return r.status or "error"


def size_cells(r: Result) -> list[str]:
    """layers, heads, d_model, d_mlp, params."""
    return [str(r.layers), str(r.heads), fmt_int(r.d_model), fmt_int(r.d_mlp), fmt_int(r.params)]


def memory_cell(r: Result) -> str:
    if r.rss_peak_mb is None or r.rss_base_mb is None:
        return "–"
    return f"{r.rss_peak_mb:.0f} (+{r.rss_peak_mb - r.rss_base_mb:.0f})"


# ---------------------------------------------------------------------------- text


def wrap_prose(text: str, width: int = 92) -> str:
    """Wrap paragraphs and list items (not tables or headings) to ``width`` columns."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width or line.startswith(("|", "#")):
            out.append(line)
        elif line.startswith("- "):
            out.append(textwrap.fill(line, width, subsequent_indent="  ", break_on_hyphens=False))
        else:
            out.append(textwrap.fill(line, width, break_on_hyphens=False))
    return "\n".join(out)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def notes_block(title: str, notes: list[str]) -> str:
    """The notes, one a line, under ``title``; "" without notes."""
    return f"\n{title}:\n\n" + "\n".join(notes) + "\n" if notes else ""


# ---------------------------------------------------------------------------- header


def machine_line() -> str:
    try:
        import torch

        tv = str(torch.__version__)
        gpu = "GPU available but unused" if torch.cuda.is_available() else "no GPU"
    except Exception:  # noqa: BLE001
        tv, gpu = "?", "?"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core CPU ({cpu}), {gpu}, Python {platform.python_version()}, torch {tv}"
    )


def run_line(quick: bool, no_tracr: bool) -> str:
    """The machine, the command line, the date and the commit (unwrapped, no full stop)."""
    head = (
        f"Machine: {machine_line()}. Run `python benchmarks/run.py"
        f"{' --quick' if quick else ''}{' --no-tracr' if no_tracr else ''}` "
        f"on {_dt.date.today().isoformat()}"
    )
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "rasp_compiler", "grammar"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if rev:
            head += f" (commit {rev}{' plus uncommitted compiler changes' if dirty else ''})"
    except OSError:
        pass
    return head


# ---------------------------------------------------------------------------- output files


def write_results(out: str | Path, head: str, parts: list[str]) -> None:
    text = "## Benchmark results\n\n" + head + "\n\n" + "\n".join(parts)
    Path(out).write_text(text, encoding="utf-8")


def update_readme(head: str, parts: list[str]) -> None:
    """Replace what follows README.md's "## Benchmarks" heading, up to the next "## "."""
    readme = ROOT / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.rstrip() == "## Benchmarks")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    intro = wrap_prose(
        "Produced by `python benchmarks/run.py` (about 33 minutes on the machine below; "
        "`--full-throughput` times all 256 inputs at length 1024, `--quick` is a smoke run, "
        "`--no-tracr` skips the comparison; tracr is the "
        "optional `bench` extra, `pip install -e '.[bench]'`). The same tables are in "
        "[benchmarks/results.md](benchmarks/results.md)."
    )
    body = "\n" + intro + "\n\n" + head + "\n\n" + "\n".join(parts)
    new = lines[: start + 1] + [body.rstrip("\n") + "\n"]
    if end is not None:
        new += ["\n"] + lines[end:]
    readme.write_text("".join(new), encoding="utf-8")
