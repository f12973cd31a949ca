"""What every benchmark writes beside its figures: the machine, and its own report section."""

from __future__ import annotations

import contextlib
from pathlib import Path


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def write_section(
    report: Path, start_mark: str, end_mark: str, section: str, after_mark: str | None = None
) -> None:
    """Replace one benchmark's section between its markers, or add it: after the section that
    ends with `after_mark` when there is one, right under the title when `after_mark` is "",
    at the end otherwise; nothing else changes."""
    text = report.read_text() if report.exists() else "# Etter performance report\n"
    if start_mark in text and end_mark in text:
        before, rest = text.split(start_mark, 1)
        after = rest.split(end_mark, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    elif after_mark == "" and text.startswith("# "):
        title, _, rest = text.partition("\n")
        text = title + "\n\n" + section + "\n" + rest.lstrip("\n")
    elif after_mark and after_mark in text:
        before, rest = text.split(after_mark, 1)
        text = before + after_mark + "\n\n" + section + "\n" + rest.lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    report.write_text(text)
