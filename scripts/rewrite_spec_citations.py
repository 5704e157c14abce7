#!/usr/bin/env python3
"""Points every citation of the external SPEC.md / STYLE.md at the project's own docs:
"SPEC.md section N" -> "docs/math.md section N" (same section numbers), "STYLE.md" ->
"docs/CONTRIBUTING.md", plus the irregular forms ("SPEC's ...", "SPEC fact 1", "seed 002"), and
drops the history notes in code comments ("(issue 6, ...)", "(issue 8)"). Idempotent: a second
run changes nothing. Prints every change, then any changed line still longer than 100 columns
and any mention of SPEC or of an issue that no rule covers (to fix by hand).

Usage: scripts/rewrite_spec_citations.py [--dry-run]   (run from anywhere; scans the files git
knows, tracked or untracked but not ignored; then run scripts/make_readme.py)"""
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve()
EXTENSIONS = {".cpp", ".hpp", ".h", ".cc", ".cu", ".cuh", ".py", ".pyi", ".md", ".toml", ".txt",
              ".cmake", ".sh", ".in"}
NAMES = {"Makefile", "CMakeLists.txt"}
LINE_LIMIT = 100

SPEC = r"SPEC(?:\.md)?"
M = "docs/math.md"

# (pattern, replacement), applied in order. Exact phrases first, then the general forms.
RULES = [
    # The paths of the external files.
    (r"(?:/work/|\.\./)?shared/docs/SPEC\.md", M),
    (r"(?:/work/|\.\./)?shared/docs/STYLE\.md", "docs/CONTRIBUTING.md"),
    # How the code was built is no part of it: "(issue 6, SPEC.md section 7)" ->
    # "(docs/math.md section 7)", "runner (issue 4)." -> "runner.", and a few phrases.
    (r"\(issue \d+(?: item \d+)?, ", "("),
    (r" \(issue \d+(?: item \d+)?\)", ""),
    (r"\(issue \d+ performance row\)", "(a row of the README's performance table)"),
    (r"at the issue's\n(\s*// )size", r"at the\n\1published size"),
    (r"is the issue's bar for", "is the bar for"),
    (r'"""Issue \d+ learning experiments:', '"""Learning experiments:'),
    (r"the issue \d+ learning experiments", "the learning experiments"),
    # The papers were labelled "seed 000".."003" in the external spec.
    (r"arXiv 2312\.10794;\n# seed 002\): ", "arXiv 2312.10794):\n# "),
    (r"(" + SPEC + r" section \d+), seed 00\d\)", r"\1)"),
    # Facts 1-5 are listed in section 1.5.
    (SPEC + r" section 3, fact (\d)", M + r" section 1.5, fact \1"),
    (SPEC + r" fact (\d)", M + r" section 1.5, fact \1"),
    # Sections whose cited part has its own subsection.
    (SPEC + r" section 5 table", M + " section 5.4"),
    (SPEC + r" section 4, \"Learning\"", M + " section 4.6"),
    (SPEC + r" section 5, known behaviour", M + " section 5.3, known behaviour"),
    # Lines that would outgrow 100 columns, rewrapped by hand (strings, docstrings).
    (r'"Solve the equiangular ODE drho/dt = 2 b \(1 - rho\)\(\(n-1\) rho \+ 1\) / factor '
     r'\(SPEC\.md section 6\) "\n(\s*)"with dopri5',
     r'"Solve the equiangular ODE drho/dt = 2 b (1 - rho)((n-1) rho + 1) / factor "\n'
     r'\1"(docs/math.md section 6) with dopri5'),
    (r'"Mean-field predictions \(SPEC\.md section 6\): equiangular ODEs, long-context map, "\n'
     r'(\s*)"cluster count on the circle"',
     r'"Mean-field predictions (docs/math.md section 6): equiangular ODEs, "\n'
     r'\1"long-context map, cluster count on the circle"'),
    (r"# attnflow icl: in-context linear regression with one attention layer "
     r"\(SPEC\.md section 7\)\.\n",
     "# attnflow icl: in-context linear regression with one attention layer.\n"
     "# The mathematics: " + M + " section 7.\n"),
    (r'(\s*)"""dA/dt = b S\^2 - b\^2 S\^2 A S, db/dt = tr\(A\^T S\^2\) - b tr\(A\^T S\^2 A S\) '
     r'\(SPEC\.md section 7\)\."""',
     r'\1"""The flow of ' + M + r' section 7.4:\1dA/dt = b S^2 - b^2 S^2 A S, '
     r'db/dt = tr(A^T S^2) - b tr(A^T S^2 A S)."""'),
    (r'"""attnflow theory end to end \(SPEC\.md section 6\): the equiangular CSV against an '
     r"independent\nNumPy RK4 solution of SPEC's ODE, long-context JSON against a dense NumPy "
     r"attention layer,\nthe cluster prediction against Bessel functions by quadrature; help and "
     r'error messages\."""',
     '"""attnflow theory end to end (' + M + ' section 6): the equiangular CSV against an\n'
     "independent NumPy RK4 solution of its ODE, long-context JSON against a dense NumPy "
     "attention\nlayer, the cluster prediction against Bessel functions by quadrature; help and "
     'error messages."""'),
    # The run template, in src/run and in docs/usage/run.md alike.
    (r"(# Tokens x_i on the sphere S\^\{d-1\} follow dx_i/dt = P_\{x_i\}\(attention average\),)"
     r" SPEC\.md section 5\.", r"\1\n# " + M + " section 5.1."),
    # Possessives and bare mentions, phrase by phrase.
    (r"SPEC's SA and USA ODE", "the SA and USA ODE of " + M + " section 6.1"),
    (r"SPEC's Kuramoto form", "the Kuramoto form of " + M + " section 5.2"),
    (r"SPEC's formula", "the formula of " + M + " section 6.1"),
    (r"SPEC's closed forms", "the closed forms of " + M + " section 6.1"),
    (r"SPEC's ODE", "the ODE of " + M + " section 6.1"),
    (r"RK4 of the SPEC's flow for 40 steps \(an independent implementation of the ODE\)",
     "RK4 of the flow of " + M + " section 7.4, 40 steps (an independent implementation)"),
    (r"the SPEC's flow", "the flow of " + M + " section 7.4"),
    (r"The SPEC's statement", "The statement of " + M + " section 6.1,"),
    (r"the SPEC table", "the table of " + M + " section 5.4"),
    (r"SPEC's definition", "the definition of " + M + " section 5.7"),
    (r"SPEC's safe range (0\.7-0\.9)", r"the safe range \1 of " + M + " section 3.3"),
    (r"of SPEC's form (s_ij = <u_i, v_j> \+ r_i \+ c_j)",
     r"of the form \1 (" + M + " section 1.1)"),
    (r"\(SPEC\)", "(" + M + " section 6.1)"),
    # The other pages, where the layout lists them or a comment cites one.
    (r"(\n    docs/ {15})ARCHITECTURE\.md, theory\.md \(derivations\), "
     r"usage/ \(the sections above\)",
     r"\1math.md (the mathematics), theory.md (derivations), ARCHITECTURE.md,\n"
     r"                        CONTRIBUTING.md (house rules), usage/ (the sections above)"),
    (r"\(ARCHITECTURE\.md(?!\))", "(docs/ARCHITECTURE.md"),  # not a link "(ARCHITECTURE.md)"
    # General forms: "SPEC.md section(s) N", "SPEC section N", a bare "SPEC.md".
    (SPEC + r"(\s+)section", M + r"\1section"),
    (r"SPEC\.md", M),
    (r"STYLE\.md", "docs/CONTRIBUTING.md"),
]
COMPILED = [(re.compile(p), r) for p, r in RULES]
TRIGGER = re.compile(r"SPEC|STYLE\.md|[Ii]ssue|ARCHITECTURE\.md")
# Left for a person: other mentions of the spec, of issues, of sessions.
LEFTOVER = re.compile(
    r"\bSPEC\b|STYLE\.md|\b[Ii]ssues?\b|(?<!scope=\")\bsessions?\b|different hands")


def candidates():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=ROOT, check=True, capture_output=True).stdout.decode()
    for name in sorted(set(filter(None, out.split("\0")))):
        path = ROOT / name
        if path.resolve() == SELF or not path.is_file():
            continue
        if path.suffix in EXTENSIONS or path.name in NAMES:
            yield path


def rewrite(text):
    for pattern, repl in COMPILED:
        text = pattern.sub(repl, text)
    return text


# A whole-line comment: its marker with the whitespace after it (kept for continuation lines,
# so aligned blocks stay aligned), then the text.
SLASH_COMMENT = re.compile(r"^(\s*//+ *)(\S.*)$")
HASH_COMMENT = re.compile(r"^(\s*#+ +)(\S.*)$")
UNBREAKABLE = re.compile(r"docs/math\.md sections? \d+(?:\.\d+)?(?:, fact \d)?")


def comment_match(line, suffix):
    if suffix in {".cpp", ".hpp", ".h", ".cc", ".cu", ".cuh"}:
        return SLASH_COMMENT.match(line) or HASH_COMMENT.match(line)  # '#' lines: TOML templates
    if suffix in {".py", ".pyi", ".toml", ".sh", ".cmake", ".txt", ".in", ""}:
        return HASH_COMMENT.match(line)
    return None


def reflow(lines, k, suffix):
    """Rewraps the whole-line comment at index k to LINE_LIMIT columns, carrying the overflow
    into the next line of the same comment block (same marker and indentation), or into a new
    line. Returns False when line k is not such a comment (the caller reports it)."""
    while k < len(lines) and len(lines[k]) > LINE_LIMIT:
        m = comment_match(lines[k], suffix)
        if not m:
            return False
        prefix = m.group(1)
        # "docs/math.md section 5.4" is never split across lines.
        masked = UNBREAKABLE.sub(lambda c: c.group(0).replace(" ", "_"), lines[k])
        cut = masked.rfind(" ", len(prefix) + 1, LINE_LIMIT + 1)
        if cut < 0:
            return False
        head, tail = lines[k][:cut].rstrip(), lines[k][cut + 1:].strip()
        nxt = comment_match(lines[k + 1], suffix) if k + 1 < len(lines) else None
        # Carry into the next line of the block unless the tail ends a sentence and the next
        # line starts one (a line of its own stays one).
        new_sentence = tail.endswith((".", ":")) and nxt and nxt.group(2)[:1].isupper()
        if nxt and nxt.group(1) == prefix and not new_sentence:
            lines[k + 1] = prefix + tail + " " + nxt.group(2)
        else:
            lines.insert(k + 1, prefix + tail)
        lines[k] = head
        k += 1
    return True


def rewrite_file(old, suffix):
    """The rewritten text and the lines (1-based, in the new text) still over the limit."""
    new = rewrite(old)
    if new == old:
        return old, []
    old_set = set(old.splitlines())
    lines = new.splitlines()
    long_lines, k = [], 0
    while k < len(lines):
        if lines[k] not in old_set and len(lines[k]) > LINE_LIMIT and suffix != ".md":
            if not reflow(lines, k, suffix):
                long_lines.append(k + 1)
        k += 1
    return "\n".join(lines) + ("\n" if new.endswith("\n") else ""), long_lines


def main():
    dry = "--dry-run" in sys.argv[1:]
    changed_files, long_lines, leftovers = 0, [], []
    for path in candidates():
        try:
            old = path.read_text()
        except UnicodeDecodeError:
            continue
        rel = path.relative_to(ROOT)
        new, too_long = rewrite_file(old, path.suffix) if TRIGGER.search(old) else (old, [])
        if new != old:
            changed_files += 1
            diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            for line in diff:
                if line.startswith("@@"):
                    print(f"{rel}:{line.split()[2].lstrip('+').split(',')[0]}:")
                elif line[:1] in "-+" and not line.startswith(("---", "+++")):
                    print("  " + line)
            long_lines += [f"{rel}:{k} ({len(new.splitlines()[k - 1])} columns)" for k in too_long]
            if not dry:
                path.write_text(new)
        for k, line in enumerate(new.splitlines(), 1):
            if LEFTOVER.search(line):
                leftovers.append(f"{rel}:{k}: {line.strip()}")
    verb = "would change" if dry else "changed"
    print(f"\n{verb} {changed_files} files")
    if long_lines:
        print(f"changed lines still longer than {LINE_LIMIT} columns (rewrap by hand):")
        print("\n".join("  " + s for s in long_lines))
    if leftovers:
        print("mentions no rule covers (fix by hand):")
        print("\n".join("  " + s for s in leftovers))
    if changed_files and not dry:
        print("then regenerate README.md: scripts/make_readme.py")


if __name__ == "__main__":
    main()
