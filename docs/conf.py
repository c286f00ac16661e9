"""Sphinx configuration of the cnnpool documentation.

Build (offline; warnings are errors, as in CI)::

    pip install ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

The API reference documents the *installed* cnnpool (autodoc imports it),
so install the package before building.  The guide's examples are run as
doctests by ``tests/test_doctests.py``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

import sphinx.ext.autosummary as _autosummary

import cnnpool

HERE = Path(__file__).parent

project = "cnnpool"
author = "cnnpool developers"
copyright = "2026, cnnpool developers"
release = cnnpool.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "README.md"]
templates_path = ["_templates"]
html_static_path: list[str] = []
html_theme = "alabaster"
html_title = f"cnnpool {release}"
html_theme_options = {
    "description": "Compiled CNN layers for understanding and comparing pooling",
    "fixed_sidebar": True,
}

# autodoc / autosummary / numpydoc
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"  # the numpydoc Parameters sections say it, once
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# MyST: Markdown pages (the changelog, guides written in Markdown).
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# ---------------------------------------------------------------------------
# Generated parts of the docs.  ``api.rst`` is written whole from
# ``cnnpool.__all__`` when this file is read (before autosummary looks for
# what to generate).  Other pages may hold a comment marker that the
# ``source-read`` hook below replaces before the page is parsed.

#: Modules documented whole in the API reference (those present are listed).
API_MODULES = [
    "cnnpool.registry",
    "cnnpool.pooling.geometry",
    "cnnpool.datasets",
    "cnnpool.experiments.stats",
    "cnnpool.experiments.plots",
    "cnnpool.experiments.settings",
    "cnnpool.experiments.strategies",
    "cnnpool.experiments.data",
    "cnnpool.experiments.arch",
    "cnnpool.experiments.training",
    "cnnpool.experiments.runner",
    "cnnpool.experiments.tuning",
    "cnnpool.experiments.summary",
    "cnnpool.experiments.report",
    "cnnpool.experiments.report_html",
    "cnnpool.experiments.store",
    "cnnpool.experiments.outputs",
    "cnnpool.experiments.progress",
    "cnnpool.experiments.cli",
]

#: Section order of the top-level API, by defining module (others follow).
API_ORDER = ["layer", "pooling", "gradcheck"]


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _api_listing() -> str:
    """Autosummary tables of ``cnnpool.__all__``, grouped by defining module."""
    groups: dict[str, list[str]] = {}
    aliases: list[tuple[str, str]] = []
    for name in cnnpool.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(cnnpool, name)
        real = getattr(obj, "__name__", name)
        if real != name and real in cnnpool.__all__:
            aliases.append((name, real))
            continue
        parts = getattr(obj, "__module__", "cnnpool").split(".")
        groups.setdefault(parts[1] if len(parts) > 1 else "cnnpool", []).append(name)
    order = sorted(groups, key=lambda g: (API_ORDER.index(g) if g in API_ORDER else 99, g))
    out = []
    for group in order:
        module = importlib.import_module(f"cnnpool.{group}") if group != "cnnpool" else cnnpool
        title = f"``cnnpool.{group}``"
        out += [
            title,
            "-" * len(title),
            "",
            _first_line(module),
            "",
            ".. autosummary::",
            "   :toctree: generated",
            "   :nosignatures:",
            "",
        ]
        out += [f"   cnnpool.{name}" for name in groups[group]]
        out.append("")
        for alias, real in aliases:
            if real in groups[group]:
                out += [f"``cnnpool.{alias}`` is another name of :class:`cnnpool.{real}`.", ""]
    present = [m for m in API_MODULES if importlib.util.find_spec(m) is not None]
    if present:
        out += [
            "Modules",
            "-------",
            "",
            "Modules whose contents are used through the module rather than "
            "imported into ``cnnpool``.",
            "",
            ".. autosummary::",
            "   :toctree: generated",
            "",
        ]
        out += [f"   {m}" for m in present]
        out.append("")
    return "\n".join(out)


def _optional_page(marker: str, candidates: list[str], fallback: str) -> tuple[str, str]:
    """A toctree of the first existing page among ``candidates``, else ``fallback`` text."""
    for page in candidates:
        if (HERE / page).is_file():
            stem = page.rsplit(".", 1)[0]
            return marker, f".. toctree::\n   :maxdepth: 2\n\n   {stem}\n"
    return marker, fallback


def _replacements() -> dict[str, str]:
    strategy_marker, strategy_text = _optional_page(
        ".. writing-a-strategy-guide",
        ["writing_a_strategy.md", "writing_a_strategy.rst"],
        "The long-form guide to writing a strategy (parameters, a compiled "
        "strategy through ``cnnpool/pooling/tiers/_strategy.pxd``, what it costs next "
        "to the built-ins) is being written; until it lands, the example above "
        "and the README's section *Your own pooling strategy* are the guide.\n",
    )
    results = HERE.parent / "benchmarks" / "RESULTS.md"
    if results.is_file():
        bench = ".. include:: ../benchmarks/RESULTS.md\n   :parser: myst_parser.sphinx_\n"
    else:
        bench = (
            "No benchmark results are recorded in this tree yet: "
            "``benchmarks/RESULTS.md`` appears once the benchmark has been run "
            "(``python benchmarks/bench_layers.py``).\n"
        )
    return {
        strategy_marker: strategy_text,
        ".. benchmark-results": bench,
    }


API_PAGE = """\
.. This page is generated by docs/conf.py from cnnpool.__all__: edit conf.py, not it.

API reference
=============

Generated from the docstrings of the installed package.  Everything listed
by name is importable as ``import cnnpool as cp; cp.<name>``; the modules at
the end are used through the module.

"""


def _write_api_page() -> None:
    """Write ``api.rst`` before Sphinx reads anything, so autosummary sees it."""
    text = API_PAGE + _api_listing()
    page = HERE / "api.rst"
    if not page.is_file() or page.read_text(encoding="utf-8") != text:
        page.write_text(text, encoding="utf-8")


_write_api_page()


def _whole_literals_summary(extract):
    """Wrap autosummary's summary extraction so it never cuts inside ````code````.

    Autosummary ends a summary at the first ``". "``, even inside an inline
    literal (``sigmoid(w . x)``), which leaves an unclosed literal and a
    docutils warning.  Then the docstring's whole first paragraph is used.
    """

    def summary(doc, *args, **kwargs):
        text = extract(doc, *args, **kwargs)
        if text.count("``") % 2:
            para = []
            for line in doc:
                if not line.strip():
                    if para:
                        break
                    continue
                para.append(line.strip())
            text = " ".join(para)
        return text

    return summary


_autosummary.extract_summary = _whole_literals_summary(_autosummary.extract_summary)


def _source_read(app, docname, source):
    text = source[0]
    for marker, replacement in _replacements().items():
        if marker in text:
            text = text.replace(marker, replacement)
    source[0] = text


def setup(app):
    app.connect("source-read", _source_read)
