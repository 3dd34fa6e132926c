#!/usr/bin/env python3
"""check-requirements.py PYPROJECT

Checks that the running interpreter's environment satisfies
[project].dependencies of PYPROJECT, whichever installer filled it (uv in the
upstream profile, Debian packages in the offline one). Standard library
only: it runs in a venv that has no pip and no `packaging`.

Exit 0 and a table when every requirement is met; exit 1 naming each unmet
requirement and what is installed; exit 2 on unusable input.
"""

import importlib.metadata as md
import re
import sys
import tomllib

OPS = ("~=", "==", "!=", "<=", ">=", "<", ">")
REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_version(v):
    """Numeric release tuple: '0.92.0' -> (0, 92), '2.0.0rc1' -> (2,).

    Trailing zeros are dropped so 0.92 == 0.92.0; a component with a
    pre/post/local suffix keeps its leading digits ('1rc2' -> 1).
    """
    v = v.strip().lstrip("vV")
    v = v.split("+", 1)[0]
    if "!" in v:  # epoch, rare; compare the release only
        v = v.split("!", 1)[1]
    parts = []
    for c in v.split("."):
        m = re.match(r"\d+", c)
        if not m:
            break
        parts.append(int(m.group()))
        if m.end() != len(c):
            break
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def satisfies(installed, op, wanted):
    iv = parse_version(installed)
    if op in ("==", "!=") and wanted.endswith(".*"):
        # ==1.10.* : the first components equal, missing ones count as 0.
        pw = tuple(int(x) for x in wanted[:-2].split("."))
        full = tuple(list(iv) + [0] * len(pw))[: len(pw)]
        match = full == pw
        return match if op == "==" else not match
    wv = parse_version(wanted)
    if op == "==":
        return iv == wv
    if op == "!=":
        return iv != wv
    if op == ">=":
        return iv >= wv
    if op == "<=":
        return iv <= wv
    if op == ">":
        return iv > wv
    if op == "<":
        return iv < wv
    if op == "~=":
        # ~=X.Y means >=X.Y, ==X.*
        raw = [int(x) for x in re.findall(r"\d+", wanted.split("+")[0])]
        if len(raw) < 2:
            raise ValueError(f"~={wanted}: needs at least two components")
        upper = tuple(raw[:-1])
        full = tuple(list(iv) + [0] * len(upper))[: len(upper)]
        return iv >= wv and full == upper
    raise ValueError(f"unknown operator {op}")


def parse_requirement(text):
    """'pydantic>=1.10,<3' -> ('pydantic', [('>=','1.10'), ('<','3')], marker)."""
    req, _, marker = text.partition(";")
    m = REQ.match(req)
    if not m:
        raise ValueError(f"cannot parse requirement {text!r}")
    name, _extras, spec = m.groups()
    clauses = []
    if spec:
        if spec.startswith("@"):
            raise ValueError(f"{text!r}: direct URL requirements are not supported")
        spec = spec.strip("() ")
        for clause in spec.split(","):
            clause = clause.strip()
            for op in OPS:
                if clause.startswith(op):
                    ver = clause[len(op):].strip()
                    if not ver:
                        raise ValueError(f"{text!r}: empty version after {op}")
                    clauses.append((op, ver))
                    break
            else:
                raise ValueError(f"{text!r}: unsupported clause {clause!r} (use {', '.join(OPS)})")
    return name, clauses, marker.strip()


def installed_version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        pass
    # Debian's egg-info names do not always match the lookup normalisation.
    want = normalize(name)
    for dist in md.distributions():
        n = dist.metadata["Name"]
        if n and normalize(n) == want:
            return dist.version
    return None


def main(argv):
    if len(argv) != 2:
        print("usage: check-requirements.py PYPROJECT", file=sys.stderr)
        return 2
    try:
        with open(argv[1], "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"check-requirements.py: cannot read {argv[1]}: {e}", file=sys.stderr)
        return 2
    deps = project.get("dependencies", [])
    if not deps:
        print(f"check-requirements.py: {argv[1]} has no [project].dependencies", file=sys.stderr)
        return 2

    rows, failures = [], []
    for text in deps:
        try:
            name, clauses, marker = parse_requirement(text)
        except ValueError as e:
            print(f"check-requirements.py: {argv[1]}: {e}", file=sys.stderr)
            return 2
        if marker:
            # Markers would need the full PEP 508 grammar; say so rather
            # than guess.
            rows.append((name, text, "-", f"skipped (marker: {marker})"))
            continue
        have = installed_version(name)
        if have is None:
            failures.append(f"{text}: not installed")
            rows.append((name, text, "missing", "FAIL"))
            continue
        bad = [f"{op}{v}" for op, v in clauses if not satisfies(have, op, v)]
        if bad:
            failures.append(f"{text}: installed {name} {have} does not satisfy {','.join(bad)}")
            rows.append((name, text, have, "FAIL"))
        else:
            rows.append((name, text, have, "ok"))

    if failures:
        print(f"check-requirements.py: {len(failures)} unmet requirement(s) of {argv[1]} in {sys.prefix}:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    w = [max(len(r[i]) for r in rows + [("package", "requirement", "installed", "status")]) for i in range(4)]
    line = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()
    print(line(("package", "requirement", "installed", "status")))
    for r in rows:
        print(line(r))
    print(f"all {len(rows)} requirements of {argv[1]} are met in {sys.prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
