#!/usr/bin/env python3
"""Assembles README.md from docs/readme_head.md, the usage sections in docs/usage/*.md (their
performance subsections are dropped: the README has one table) and docs/readme_tail.md.
Usage: scripts/make_readme.py   (run from anywhere; rewrites README.md)"""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["ot", "run", "view", "flow", "theory", "icl", "model", "python"]


def shifted(text, top_level=3):
    lines = text.splitlines()
    levels, fenced = [], False
    for line in lines:  # heading levels outside ``` blocks (a TOML comment is not a heading)
        fenced ^= line.startswith("```")
        if not fenced and (m := re.match(r"^(#+) ", line)):
            levels.append(len(m.group(1)))
    shift = top_level - min(levels) if levels else 0
    out, skip_level, in_code = [], None, False
    for line in lines:
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^(#+) (.*)$", line)
        if m:
            level = len(m.group(1))
            if skip_level is not None and level <= skip_level:
                skip_level = None
            if "performance" in m.group(2).lower():
                skip_level = level
                continue
            line = "#" * (level + shift) + " " + m.group(2)
        if skip_level is None:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


parts = [(ROOT / "docs" / "readme_head.md").read_text()]
for name in ORDER:
    parts.append(shifted((ROOT / "docs" / "usage" / f"{name}.md").read_text()))
parts.append((ROOT / "docs" / "readme_tail.md").read_text())
(ROOT / "README.md").write_text("\n".join(parts))
print("wrote", ROOT / "README.md")
