#!/usr/bin/env python3
"""Assembles README.md from docs/readme_head.md, the usage sections in docs/usage/*.md (their
performance subsections are dropped: the README has one table) and docs/readme_tail.md, and
fills the placeholders in them from committed outputs, so that a documented claim cannot drift
from what the program prints.

Usage:
  scripts/make_readme.py             rewrites README.md
  scripts/make_readme.py --check     exits 1 (and says where) if README.md is not what the
                                     generator writes from the current docs and outputs
  scripts/make_readme.py --refresh-demo BUILD/attnflow
                                     reruns `attnflow demo` and commits its observables.csv and
                                     summary.json to docs/outputs/demo/ (then rewrites README.md)

Placeholders (in docs/readme_head.md, docs/usage/*.md, docs/readme_tail.md):
  {{SOURCE:at(T, COLUMN)}}    COLUMN at time t = T
  {{SOURCE:from(CONDITION)}}  the first observation time at which CONDITION holds
  {{SOURCE:until(CONDITION)}} the first time after from(CONDITION) at which it no longer holds
  {{SOURCE:last(COLUMN)}}     COLUMN at the last observation
  {{json:PATH:KEY.KEY}}       a value of a committed JSON file (list indices as numbers)
SOURCE is a table of SOURCES below (a CSV with a t column; system 0 of an ensemble), CONDITION
is "COLUMN OP NUMBER" with OP one of == != <= >= < >. A placeholder whose claim has no answer
(a condition that never holds, or never stops holding) is an error naming it: rewrite the
sentence, never the number."""
import csv
import json
import operator
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["ot", "run", "view", "flow", "theory", "icl", "model", "python", "gpu", "mpi"]
# Committed outputs that documented claims are generated from.
SOURCES = {"demo": "docs/outputs/demo/observables.csv"}
OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge,
       "<": operator.lt, ">": operator.gt}
PLACEHOLDER = re.compile(r"\{\{([^{}]+)\}\}")


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


def read_table(path):
    """CSV -> list of {column: float} rows of system 0 (text cells stay strings)."""
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            if row.get("system", 0.0) == 0.0:
                rows.append(row)
    return rows


def number(v):
    """A value as the docs write it: integers without a decimal point, others with %g."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


def condition(text, where):
    m = re.fullmatch(r"\s*(\w+)\s*(==|!=|<=|>=|<|>)\s*([-+0-9.eE]+)\s*", text)
    if not m:
        raise ValueError(f"{where}: condition '{text}' must be 'COLUMN OP NUMBER'")
    col, op, value = m.group(1), OPS[m.group(2)], float(m.group(3))
    return lambda row: op(row[col], value)


def table_value(rows, call, where):
    m = re.fullmatch(r"\s*(at|from|until|last)\((.*)\)\s*", call)
    if not m:
        raise ValueError(f"{where}: '{call}' must be at(T, COLUMN), from(CONDITION), until(CONDITION) "
                         "or last(COLUMN)")
    fn, arg = m.group(1), m.group(2)
    if fn == "at":
        t, col = (s.strip() for s in arg.split(","))
        hit = [r for r in rows if r["t"] == float(t)]
        if not hit:
            raise ValueError(f"{where}: no observation at t = {t}")
        return hit[0][col]
    if fn == "last":
        return rows[-1][arg.strip()]
    holds = condition(arg, where)
    first = next((k for k, r in enumerate(rows) if holds(r)), None)
    if first is None:
        raise ValueError(f"{where}: '{arg}' never holds")
    if fn == "from":
        return rows[first]["t"]
    end = next((r for r in rows[first:] if not holds(r)), None)
    if end is None:
        raise ValueError(f"{where}: '{arg}' holds until the end (t = {number(rows[-1]['t'])})")
    return end["t"]


def json_value(spec, where):
    path, _, keys = spec.partition(":")
    value = json.loads((ROOT / path).read_text())
    for k in keys.split("."):
        value = value[int(k)] if isinstance(value, list) else value[k]
    return value


def fill(text, name, cache):
    def one(m):
        where = f"{name}: {{{{{m.group(1)}}}}}"
        source, _, call = m.group(1).partition(":")
        if source == "json":
            return number(json_value(call, where))
        if source not in SOURCES:
            raise ValueError(f"{where}: unknown source '{source}' (known: json, {', '.join(SOURCES)})")
        if source not in cache:
            cache[source] = read_table(ROOT / SOURCES[source])
        return number(table_value(cache[source], call, where))

    return PLACEHOLDER.sub(one, text)


def generate():
    cache = {}
    docs = [("docs/readme_head.md", (ROOT / "docs" / "readme_head.md").read_text())]
    for name in ORDER:
        path = f"docs/usage/{name}.md"
        docs.append((path, shifted((ROOT / path).read_text())))
    docs.append(("docs/readme_tail.md", (ROOT / "docs" / "readme_tail.md").read_text()))
    return "\n".join(fill(text, name, cache) for name, text in docs)


def refresh_demo(cli):
    out = ROOT / SOURCES["demo"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "demo"
        subprocess.run([cli, "demo", "--out", str(run), "--no-plots"], check=True, stdout=subprocess.DEVNULL)
        out.write_text((run / "observables.csv").read_text())
        summary = json.loads((run / "summary.json").read_text())
        for volatile in ("seconds", "attnflow_version"):
            summary.pop(volatile, None)
        (out.parent / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("wrote", out, "and", out.parent / "summary.json")


def main(argv):
    if argv[:1] == ["--refresh-demo"] and len(argv) == 2:
        refresh_demo(argv[1])
        argv = []
    if argv not in ([], ["--check"]):
        print(__doc__)
        return 2
    try:
        text = generate()
    except (ValueError, KeyError, OSError) as e:
        print(f"make_readme.py: error: {e}", file=sys.stderr)
        return 1
    readme = ROOT / "README.md"
    if argv == ["--check"]:
        if readme.read_text() != text:
            old, new = readme.read_text().splitlines(), text.splitlines()
            k = next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))
            print(f"README.md is not up to date with scripts/make_readme.py (first difference at line {k + 1}); "
                  "run scripts/make_readme.py", file=sys.stderr)
            return 1
        print("README.md is up to date")
        return 0
    readme.write_text(text)
    print("wrote", readme)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
