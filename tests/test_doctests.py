"""The examples in the docs and in the docstrings run, and say what they show.

* Every module of the installed package: the ``>>>`` examples of its
  docstrings (numpydoc ``Examples`` sections).
* Every page of the user guide in ``docs/`` (reST or Markdown): its ``>>>``
  examples, in order, in one namespace per page.  Skipped when the tests run
  without the ``docs/`` folder beside them.

Options: ``ELLIPSIS`` (``...`` matches anything) and ``NORMALIZE_WHITESPACE``.
"""

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import numpy as np
import pytest

import cnnpool

DOCS = Path(__file__).resolve().parents[1] / "docs"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: A module whose import needs one of these (optional) packages is skipped without it.
OPTIONAL = {"scipy", "matplotlib", "skimage", "joblib", "tqdm", "torch"}


def _modules():
    names = ["cnnpool"]
    for info in pkgutil.walk_packages(cnnpool.__path__, "cnnpool."):
        names.append(info.name)
    return sorted(names)


def _pages():
    if not DOCS.is_dir():
        return []
    skip = {"_build", "generated", "_templates"}
    pages = [*DOCS.rglob("*.rst"), *DOCS.rglob("*.md")]
    return sorted(p for p in pages if not skip & set(p.relative_to(DOCS).parts))


def _run(test):
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    with np.printoptions(legacy=False):
        runner.run(test, out=report.append)
    return runner.summarize(verbose=False), "".join(report)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional {exc.name}")
        raise
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    for test in tests:
        (failed, attempted), report = _run(test)
        assert failed == 0, f"{failed} of {attempted} examples in {test.name} failed:\n{report}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_guide_examples(page):
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".md":
        # A closing code fence right after an example's output would read as output.
        text = re.sub(r"(?m)^\s*(```|~~~|:::).*$", "", text)
    test = doctest.DocTestParser().get_doctest(text, {}, page.name, str(page), 0)
    (failed, attempted), report = _run(test)
    assert failed == 0, f"{failed} of {attempted} examples in docs/{page.name} failed:\n{report}"


def test_the_guide_is_found_and_has_examples():
    if not DOCS.is_dir():
        pytest.skip("no docs/ beside the tests")
    names = {p.name for p in _pages()}
    assert {"index.rst", "layers.rst", "pooling.rst"} <= names
