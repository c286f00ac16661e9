"""Check what the built distributions contain (run by .ci/run after `python -m build`).

Usage: python .ci/check_dist.py DIST_DIR

The sdist must carry every source a build needs (Cython .pyx/.pxd, C headers, stubs,
setup.py, pyproject.toml, MANIFEST.in) plus README, LICENSE, CHANGELOG and
the tests, and no generated C, compiled objects or build debris.  The wheel
must carry one compiled module per .pyx, the .pyi stubs, py.typed, the .pxd
headers and the licence, and nothing else: no .c, no .pyx, no tests.  An
x86-64 wheel must be the dispatched build: every module setup.py lists in
DISPATCHED (and that has no .pxd) also compiled for the avx2 and avx512
levels, in the _avx2/ and _avx512/ folders beside it, and no other variant.
Both must carry the version of cnnpool/_version.py.
"""

import ast
import fnmatch
import re
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fail(problems):
    for p in problems:
        print(f"check_dist: {p}", file=sys.stderr)
    sys.exit(1)


def setup_constant(name):
    """A literal tuple of setup.py (DISPATCHED, NOT_DISPATCHED: glob patterns)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise SystemExit(f"check_dist: setup.py has no {name}")


def main(dist_dir):
    dist = Path(dist_dir)
    version = re.search(
        r'__version__\s*=\s*"([^"]+)"', (ROOT / "cnnpool" / "_version.py").read_text()
    ).group(1)
    sdists = sorted(dist.glob("cnnpool-*.tar.gz"))
    wheels = sorted(dist.glob("cnnpool-*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        fail([f"expected one sdist and one wheel in {dist}, found {sdists + wheels}"])
    problems = []

    # ------------------------------------------------------------------ sdist
    with tarfile.open(sdists[0]) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    top = f"cnnpool-{version}"
    if sdists[0].name != f"{top}.tar.gz":
        problems.append(f"sdist {sdists[0].name} does not carry version {version}")
    have = set(names)
    required = {
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "PKG-INFO",
        "cnnpool/py.typed",
        "cnnpool/_version.py",
    }
    sources = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("*.py", "*.pyx", "*.pxd", "*.pyi", "*.h")
        for p in (ROOT / "cnnpool").rglob(pattern)
        if "__pycache__" not in p.parts
    }
    sources |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("*.py")}
    for name in sorted((required | sources) - have):
        problems.append(f"sdist lacks {name}")
    debris = re.compile(
        r"(\.(c|cpp|so|pyd|o|pyc|html)$|__pycache__|^build/|^dist/|_build/|^docs/generated/"
        r"|^docs/api\.rst$)"
    )
    for name in names:
        if debris.search(name):
            problems.append(f"sdist carries build debris: {name}")
    pyx = sorted(n for n in names if n.endswith(".pyx"))
    if not pyx:
        problems.append("sdist carries no .pyx sources")

    # ------------------------------------------------------------------ wheel
    with zipfile.ZipFile(wheels[0]) as whl:
        wnames = whl.namelist()
        meta = next((n for n in wnames if n.endswith(".dist-info/METADATA")), None)
        metadata = whl.read(meta).decode() if meta else ""
    if f"\nVersion: {version}\n" not in metadata:
        problems.append(f"wheel METADATA does not say Version: {version}")
    if "License-Expression: BSD-3-Clause" not in metadata:
        problems.append("wheel METADATA lacks License-Expression: BSD-3-Clause")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in wnames):
        problems.append("wheel lacks dist-info/licenses/LICENSE")
    for source in pyx:
        stem = source[: -len(".pyx")]
        if not any(re.fullmatch(re.escape(stem) + r"\..*\.(so|pyd)", n) for n in wnames):
            problems.append(f"wheel lacks the compiled module of {source}")
        if f"{stem}.pyi" not in wnames:
            problems.append(f"wheel lacks the stub {stem}.pyi")
    for name in sorted(n for n in names if n.endswith((".pxd", "py.typed"))):
        if name not in wnames:
            problems.append(f"wheel lacks {name}")
    for name in sorted(n for n in names if n.startswith("cnnpool/") and n.endswith(".py")):
        if name not in wnames:
            problems.append(f"wheel lacks {name}")
    for name in wnames:
        if not (name.startswith("cnnpool/") or name.startswith(f"cnnpool-{version}.dist-info/")):
            problems.append(f"wheel carries a file outside the package: {name}")
        elif re.search(r"\.(c|cpp|pyx|o|pyc|html)$|__pycache__|(^|/)tests?/", name):
            problems.append(f"wheel carries source or build debris: {name}")

    if re.search(r"(x86_64|amd64)\.whl$", wheels[0].name):
        patterns, excluded = setup_constant("DISPATCHED"), setup_constant("NOT_DISPATCHED")
        wanted = set()
        for source in pyx:
            stem = source[: -len(".pyx")]
            if (
                f"{stem}.pxd" in have
                or any(fnmatch.fnmatch(source, p) for p in excluded)
                or not any(fnmatch.fnmatch(source, p) for p in patterns)
            ):
                continue
            folder, _, leaf = stem.rpartition("/")
            for level in ("avx2", "avx512"):
                wanted.add(f"{folder}/_{level}/{leaf}")
        if not wanted:
            problems.append("x86-64 wheel: setup.py's DISPATCHED matches no module")
        variants = {
            re.sub(r"\.[^/]*\.(so|pyd)$", "", n)
            for n in wnames
            if re.search(r"/_avx(2|512)/[^/]+\.(so|pyd)$", n)
        }
        for name in sorted(wanted - variants):
            problems.append(f"x86-64 wheel lacks the CPU variant {name}")
        for name in sorted(variants - wanted):
            problems.append(f"x86-64 wheel carries an unexpected CPU variant {name}")

    if problems:
        fail(problems)
    n_so = sum(1 for n in wnames if n.endswith((".so", ".pyd")))
    print(
        f"check_dist: {sdists[0].name}: {len(names)} files, {len(pyx)} .pyx, no generated C; "
        f"{wheels[0].name}: {len(wnames)} files, {n_so} compiled modules, stubs and py.typed"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "dist")
