"""Every compiled module ships a ``.pyi`` stub that matches it.

Type checkers and IDEs cannot look inside a compiled extension, so each
``.pyx`` module has a hand-written stub next to it.  This test keeps the two
in step: a module without a stub, a public name missing from its stub, a
stub name the module lacks, or a function whose parameter names differ all
fail here, with the file to update named.
"""

import ast
import importlib
import importlib.machinery
import inspect
from pathlib import Path

import pytest

import cnnpool
from cnnpool._dispatch import LEVELS

PACKAGE = Path(cnnpool.__file__).parent
# A module's CPU variants (_avx2/, _avx512/ beside it) are the same C as the
# module, loaded under its name: its stub covers them (test_dispatch.py checks
# that every variant defines the same names).
VARIANT_FOLDERS = {"_" + level for level in LEVELS if level != "baseline"}


def _compiled_modules():
    suffixes = sorted(importlib.machinery.EXTENSION_SUFFIXES, key=len, reverse=True)
    found = {}
    for path in PACKAGE.rglob("*"):
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix is None or not path.is_file() or path.parent.name in VARIANT_FOLDERS:
            continue
        stem = path.name[: -len(suffix)]
        name = ".".join(("cnnpool", *path.relative_to(PACKAGE).parent.parts, stem))
        found[name] = path.with_name(stem + ".pyi")
    return sorted(found.items())


def _stub_names(tree):
    """Top-level names a stub declares: {name: parameter names or None}."""
    names = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            params = [a.arg for a in (*args.posonlyargs, *args.args)]
            params += [a.arg for a in ([args.vararg] if args.vararg else [])]
            params += [a.arg for a in args.kwonlyargs]
            params += [a.arg for a in ([args.kwarg] if args.kwarg else [])]
            names[node.name] = params
        elif isinstance(node, ast.ClassDef):
            names[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = None
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = None
    return {k: v for k, v in names.items() if not k.startswith("_")}


def _public(module):
    out = {}
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        if getattr(value, "__module__", module.__name__) not in (module.__name__, None) and (
            inspect.isclass(value) or callable(value)
        ):
            continue  # imported from elsewhere, not this module's API
        out[name] = value
    return out


def test_there_are_compiled_modules():
    assert "cnnpool._parallel" in dict(_compiled_modules())


@pytest.mark.parametrize(("name", "stub"), _compiled_modules(), ids=lambda v: getattr(v, "name", v))
def test_compiled_module_has_matching_stub(name, stub):
    assert stub.is_file(), (
        f"compiled module {name} has no type stub: add {stub.name} next to its .pyx "
        f"(see cnnpool/pooling/_ext/_kernels.pyi for the style)"
    )
    module = importlib.import_module(name)
    declared = _stub_names(ast.parse(stub.read_text(encoding="utf-8")))
    actual = _public(module)
    missing = sorted(set(actual) - set(declared))
    extra = sorted(set(declared) - set(actual))
    assert not missing, f"{stub.name} lacks {missing}, which {name} defines"
    assert not extra, f"{stub.name} declares {extra}, which {name} does not define"
    for fname, params in declared.items():
        if params is None:
            continue
        try:
            real = list(inspect.signature(actual[fname]).parameters)
        except (TypeError, ValueError):  # pragma: no cover - no signature exposed
            continue
        assert params == real, (
            f"{stub.name}: {fname}({', '.join(params)}) but {name}.{fname} takes "
            f"({', '.join(real)})"
        )
