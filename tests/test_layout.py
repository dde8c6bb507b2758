"""The layout holds: dvc.yaml's deps cover every advrep module a stage imports, no import circle in src/, each
module opens with a docstring, stages stay thin, and every profile has exactly the default's keys at every depth.

"Imports" here are the module-level ones (what running a stage script imports before it does any work); the imports
a run makes later are recorded by the stages themselves and checked against dvc.yaml in test_pipeline.py. Imports
inside a report section (`section(ctx)`) run only in the report stage, which depends on every experiment module.
"""
import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

SRC = ROOT / "src"
PKG = SRC / "advrep"


def module_file(name: str) -> Path | None:
    """advrep.x.y -> its file (a module or a package's __init__), None outside advrep."""
    if name != "advrep" and not name.startswith("advrep."):
        return None
    base = SRC.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def module_name(f: Path) -> str:
    rel = f.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def toplevel(body):
    """The statements that run on import: module level, inside top-level if / try (not `if TYPE_CHECKING`)."""
    for node in body:
        if isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            yield from toplevel(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from toplevel(node.body + node.orelse + node.finalbody + [h for x in node.handlers for h in x.body])
        else:
            yield node


def imports(f: Path) -> set[Path]:
    """The advrep modules `f` imports at module level, and their parent packages."""
    tree = ast.parse(f.read_text())
    here = module_name(f) if f.is_relative_to(SRC) else ""
    package = here if f.name == "__init__.py" else here.rpartition(".")[0]
    names = set()
    for node in toplevel(tree.body):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}  # `from pkg import module`
    out = set()
    for n in names:
        parts = n.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            m = module_file(".".join(parts[:i]))
            if m is not None:
                out.add(m)
    return out


def closure(f: Path) -> set[Path]:
    seen, todo = set(), [f]
    while todo:
        cur = todo.pop()
        for m in imports(cur):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def data_files(f: Path) -> set[Path]:
    """Non-Python files of the package a module reads (anchors.yaml)."""
    return {PKG / "anchors.yaml"} if "ANCHORS = " in f.read_text() else set()


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", list(stages()))
def test_every_imported_module_is_a_dep_of_its_stage(name):
    st = stages()[name]
    script = ROOT / st["cmd"].split()[1]
    deps = {ROOT / (d if isinstance(d, str) else next(iter(d))) for d in st["deps"]}
    need = {script, ROOT / "requirements.lock"} | closure(script)
    need |= {d for m in closure(script) for d in data_files(m)}
    missing = sorted(str(p.relative_to(ROOT)) for p in need - deps)
    assert not missing, f"stage {name}: add to its deps in dvc.yaml: {missing}"


def test_no_import_circle_in_src():
    graph = {f: imports(f) - {f} for f in PKG.rglob("*.py")}
    # a package's __init__ importing its own submodules is how a package re-exports: not a circle
    for f, deps in graph.items():
        if f.name == "__init__.py":
            graph[f] = {d for d in deps if not d.is_relative_to(f.parent)}
    state: dict[Path, int] = {}

    def visit(f, path):
        state[f] = 1
        for d in graph.get(f, ()):
            if d.name == "__init__.py" and f.is_relative_to(d.parent):
                continue  # a submodule "imports" its package's __init__ by being inside it
            if state.get(d) == 1:
                cycle = path[path.index(d):] + [d]
                raise AssertionError("import circle: " + " -> ".join(module_name(p) for p in cycle))
            if d not in state:
                visit(d, path + [d])
        state[f] = 2

    for f in graph:
        if f not in state:
            visit(f, [f])


def test_every_module_and_stage_opens_with_a_docstring():
    for f in [*PKG.rglob("*.py"), *(ROOT / "stages").glob("*.py")]:
        doc = ast.get_docstring(ast.parse(f.read_text()))
        assert doc and len(doc) > 20, f"{f.relative_to(ROOT)}: no module docstring saying its one job"


def test_stage_scripts_stay_thin():
    for f in (ROOT / "stages").glob("*.py"):
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        assert len(lines) <= 40, f"{f.name}: {len(lines)} non-blank lines; move the work into src/advrep"


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")))
def test_every_profile_has_exactly_the_defaults_keys_at_every_depth(profile):
    """Mappings must agree key for key at every depth (lists of named items, such as attacks or nets, may differ
    in length: a profile runs more or fewer of them, and a mapping keyed by those names, such as kwta's
    attack_eps, follows its list; an optional block that is null in one profile, such as kwta's adversarial
    training, may be a mapping in another)."""
    named = {"attack_eps"}  # keyed by attack names: the profile's attacks list decides them
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    other = yaml.safe_load((ROOT / "profiles" / profile).read_text())

    def compare(a, b, prefix=""):
        if not (isinstance(a, dict) and isinstance(b, dict)) or prefix.rstrip(".").rsplit(".", 1)[-1] in named:
            return []
        out = [f"{prefix}{k}: only in params.yaml" for k in a.keys() - b.keys()]
        out += [f"{prefix}{k}: only in {profile}" for k in b.keys() - a.keys()]
        for k in a.keys() & b.keys():
            out += compare(a[k], b[k], f"{prefix}{k}.")
        return out

    diff = compare(default, other)
    assert not diff, "\n".join(sorted(diff))
