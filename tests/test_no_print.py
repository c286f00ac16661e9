"""Library code never prints: it logs through ``logging`` or warns through ``warnings``.

Only the command-line tool (``cnnpool/experiments/cli.py``) and
``cnnpool.show_config()`` (``_config.py``, a report for the terminal) talk to
the terminal.  The check reads the syntax tree of every module of the
*installed* package, so it covers what users get, and (from a source
checkout) the Cython sources too.
"""

import ast
import re
from pathlib import Path

import pytest

import cnnpool

PACKAGE = Path(cnnpool.__file__).parent
SOURCE = Path(__file__).resolve().parents[1] / "cnnpool"

#: Modules allowed to print, relative to the package folder.
#: show_config() prints a report on purpose, as numpy.show_config() does.
ALLOWED = {Path("experiments/cli.py"), Path("_config.py")}

#: ``sys.stdout.write(...)`` and friends count as printing too.
STREAMS = {"stdout", "stderr", "__stdout__", "__stderr__"}


def _offences(tree):
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("print", "pprint"):
            yield node.lineno, f"{func.id}(...)"
        elif isinstance(func, ast.Attribute) and func.attr in ("pprint", "write", "writelines"):
            target = func.value
            if func.attr == "pprint" and isinstance(target, ast.Name) and target.id == "pprint":
                yield node.lineno, "pprint.pprint(...)"
            elif (
                isinstance(target, ast.Attribute)
                and target.attr in STREAMS
                and isinstance(target.value, ast.Name)
                and target.value.id == "sys"
            ):
                yield node.lineno, f"sys.{target.attr}.{func.attr}(...)"


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _library_modules():
    """Every module but the command-line tool, the one place that may print."""
    return [p for p in _modules() if p.relative_to(PACKAGE) not in ALLOWED]


def test_the_package_has_modules_to_check():
    names = {p.relative_to(PACKAGE).as_posix() for p in _modules()}
    assert {"__init__.py", "layer.py", "pooling/base.py"} <= names


@pytest.mark.parametrize(
    "path", _library_modules(), ids=lambda p: p.relative_to(PACKAGE).as_posix()
)
def test_library_module_does_not_print(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = [f"line {line}: {what}" for line, what in _offences(tree)]
    assert not found, (
        f"{path.relative_to(PACKAGE)} prints ({'; '.join(found)}). Library code must "
        "not print: use logging.getLogger(__name__) for progress and warnings.warn "
        "for problems the caller should see; only experiments/cli.py prints."
    )


def test_the_checker_catches_printing():
    code = "import sys\nprint('x')\nsys.stderr.write('y')\nlogging.info('fine')\n"
    assert [line for line, _ in _offences(ast.parse(code))] == [2, 3]


def test_cython_sources_do_not_print():
    if not SOURCE.is_dir():
        pytest.skip("no source checkout next to the tests")
    pattern = re.compile(r"^[^#]*\b(print\s*\(|printf\s*\(|sys\.std(out|err)\.write)")
    found = []
    for path in sorted([*SOURCE.rglob("*.pyx"), *SOURCE.rglob("*.pxd")]):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.name}:{number}: {line.strip()}")
    assert not found, "compiled modules must not print:\n" + "\n".join(found)
