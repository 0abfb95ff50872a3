"""Writes one benchmark's section into docs/benchmarks.md: shared by the table scripts."""
import re
from pathlib import Path


def write_section(path, heading, body, header="# Benchmarks\n\n"):
    """Replaces the section that starts with the line `heading` (up to the next level-2 heading
    or the end of the file) with `body`, or appends `body` when there is no such section; a
    missing file starts with `header`."""
    path = Path(path)
    text = path.read_text() if path.exists() else header
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def markdown_table(header, rows):
    """A Markdown table: the header line as given, a separator of as many columns, and one line
    per row of cell strings (a `|` inside a cell escaped)."""
    columns = header.count("|") - 1
    lines = [header, "|" + "---|" * columns]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)
