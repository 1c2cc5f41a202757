"""The design document (`docs/design.md`) stays true to the repository, and nothing cites a design
file outside it.

* Every RPC of every service in `protos/` (the released baseline image excluded) has a row in the
  document's "RPC index" naming `Service.Method` and its servicer module, which exists and defines
  the method; every pipeline step (display name) and every component and pipeline function of
  `pipelines/src/creditrisk_pipelines` has a row in "Pipeline steps" naming the module that defines
  it; every repository path the document names exists.
* Every citation of the document with a section (`docs/design.md, "Environments"`) and every link
  to one of its anchors names a section that exists.
* No tracked file cites a design file outside the repository, nor a path outside it; every `*.md`
  file a tracked file names exists in the repository.

The services cannot be imported here (each has its own environment), so protos and Python sources
are parsed (`ast`), never imported.
"""

from __future__ import annotations

import ast
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "design.md"
PIPELINES_SRC = ROOT / "pipelines" / "src" / "creditrisk_pipelines"
COMPONENTS = PIPELINES_SRC / "components.py"
PIPELINES = PIPELINES_SRC / "pipelines.py"

#: Paths a document names as repository paths (checked to exist).
REPO_PATH = re.compile(r"^(?:services|libs|pipelines|protos|scripts|tests|docs)/[\w./-]+$")
#: Citations of the document with a section name, in any file: docs/design.md, "Environments".
SECTION_CITATION = re.compile(r"design\.md,?\s+\"([^\"\n]+)\"")
#: Links to an anchor of the document: design.md#environments, (#environments) inside it.
ANCHOR_LINK = re.compile(r"design\.md#([\w-]+)")
#: What must appear in no tracked file (written so that this file does not match itself).
FORBIDDEN = {
    "a design file outside the repository (the upper-case name)": re.compile(r"DESIGN\.md"),
    "a shared design file": re.compile(r"shared/+DESIGN"),
    "the shared folder outside the repository": re.compile(r"/work/+shared"),
    "a relative path to a shared folder outside the repository": re.compile(r"\.\./+shared\b"),
}
#: A `*.md` file named in a tracked file: a bare name, a relative or repository path, or an absolute
#: path (never in the repository); not a path inside a template (`<name>/README.md`).
MARKDOWN_REF = re.compile(r"(?<![\w./:>}*-])(/?(?:\.{1,2}/|[\w-]+/)*[\w-]+\.md)\b")


# ---------------------------------------------------------------------- the document


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@cache
def _doc() -> str:
    assert DOC.is_file(), "docs/design.md is missing"
    return DOC.read_text(encoding="utf-8")


@cache
def _headings() -> tuple[str, ...]:
    return tuple(m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", _doc(), re.MULTILINE))


def _section(title: str) -> str:
    """The body of the level-2 section ``title`` (up to the next level-2 heading)."""
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", _doc(), re.MULTILINE | re.DOTALL)
    assert match, f'docs/design.md has no section "## {title}"'
    return match.group(1)


def _rows(body: str) -> list[list[str]]:
    """Markdown table rows as lists of cells (the separator rows left out)."""
    rows = []
    for line in body.splitlines():
        line = line.strip()
        if not line.startswith("|") or re.fullmatch(r"\|[\s:|-]+\|", line):
            continue
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _ticked(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def _paths(text: str) -> list[str]:
    return [t for t in _ticked(text) if REPO_PATH.match(t)]


# ---------------------------------------------------------------------- Python sources, parsed


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _defines_method(path: Path, name: str) -> bool:
    """A class of ``path`` defines a method ``name`` (sync or async)."""
    return any(
        isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name == name
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ClassDef)
        for item in node.body
    )


def _defines_function(path: Path, name: str) -> bool:
    """``path`` defines a top-level function ``name``."""
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in _tree(path).body
    )


def _decorator_names(node: ast.FunctionDef) -> set[str]:
    names = set()
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


@cache
def _component_functions() -> frozenset[str]:
    """Functions of components.py decorated as kfp components (``@_component``, ``@dsl.component``)."""
    return frozenset(
        node.name
        for node in _tree(COMPONENTS).body
        if isinstance(node, ast.FunctionDef) and _decorator_names(node) & {"_component", "component"}
    )


@cache
def _pipeline_functions() -> frozenset[str]:
    """Functions of pipelines.py decorated with ``@dsl.pipeline``."""
    return frozenset(
        node.name
        for node in _tree(PIPELINES).body
        if isinstance(node, ast.FunctionDef) and "pipeline" in _decorator_names(node)
    )


def _called(expr: ast.expr) -> str | None:
    """``c.train(...)`` -> ``train``; ``training(...)`` -> ``training``."""
    if not isinstance(expr, ast.Call):
        return None
    if isinstance(expr.func, ast.Attribute):
        return expr.func.attr
    if isinstance(expr.func, ast.Name):
        return expr.func.id
    return None


@cache
def _steps() -> dict[str, str]:
    """Every task of the pipelines: display name -> the component or pipeline function it runs.

    Display names are set by ``_service_task(c.<component>(...), "<name>")`` or by
    ``<task>.set_display_name("<name>")`` on a component's or pipeline's call (or a variable holding
    one).
    """
    tree = _tree(PIPELINES)
    assigned = {
        node.targets[0].id: _called(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    steps: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "_service_task" and len(node.args) == 2:
            name_arg, target = node.args[1], _called(node.args[0])
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "set_display_name" and node.args:
            inner = node.func.value
            name_arg = node.args[0]
            target = assigned.get(inner.id) if isinstance(inner, ast.Name) else _called(inner)
        else:
            continue
        if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str) and target:
            steps[name_arg.value] = target
    return steps


# ---------------------------------------------------------------------- protos, parsed


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


@cache
def _rpcs() -> tuple[tuple[str, str, str], ...]:
    """(service, method, proto file) for every ``rpc X(`` in every ``service S {`` block."""
    found = []
    for proto in sorted(ROOT.glob("protos/**/*.proto")):
        relative = proto.relative_to(ROOT).as_posix()
        if relative.startswith("protos/baseline/"):
            continue
        text = _strip_comments(proto.read_text(encoding="utf-8"))
        for match in re.finditer(r"\bservice\s+(\w+)\s*\{", text):
            depth, end = 1, match.end()
            while depth and end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            block = text[match.end() : end]
            found += [(match.group(1), rpc, relative) for rpc in re.findall(r"\brpc\s+(\w+)\s*\(", block)]
    return tuple(found)


# ---------------------------------------------------------------------- tracked files


@cache
def _tracked_text_files() -> tuple[tuple[str, str], ...]:
    """(path, text) of every tracked file that is UTF-8 text."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in sorted(filter(None, listed.split("\0"))):
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the work tree, not yet committed
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            files.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return tuple(files)


# ---------------------------------------------------------------------- tests: the indexes


def test_the_parsers_find_the_contracts_and_the_pipelines() -> None:
    services = {service for service, _, _ in _rpcs()}
    assert {"FeatureStoreService", "TrainingService", "ModelRegistryService"} <= services
    assert {"InferenceService", "DriftService"} <= services
    assert _component_functions(), "no kfp component found in components.py"
    assert _pipeline_functions(), "no kfp pipeline found in pipelines.py"
    assert _steps(), "no pipeline step found in pipelines.py"
    unknown = {
        step: target
        for step, target in _steps().items()
        if target not in _component_functions() | _pipeline_functions()
    }
    assert not unknown, f"steps running something neither a component nor a pipeline: {unknown}"


@pytest.mark.parametrize(("service", "rpc", "proto"), _rpcs(), ids=[f"{s}.{r}" for s, r, _ in _rpcs()])
def test_every_rpc_is_in_the_rpc_index_with_the_module_implementing_it(
    service: str, rpc: str, proto: str
) -> None:
    rows = [row for row in _rows(_section("RPC index")) if row[0] == f"`{service}.{rpc}`"]
    assert len(rows) == 1, (
        f'docs/design.md, "RPC index": one row for `{service}.{rpc}` ({proto}), found {len(rows)}'
    )
    row = rows[0]
    paths = _paths(" | ".join(row[1:]))
    assert paths, f"the row of {service}.{rpc} names no module"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"the row of {service}.{rpc} names modules that do not exist: {missing}"
    servicer = _paths(row[1])
    assert servicer, f"the row of {service}.{rpc} names no servicer module in its second column"
    assert _defines_method(ROOT / servicer[0], rpc), f"{servicer[0]} defines no method {rpc}"


def test_the_rpc_index_names_no_rpc_the_contracts_lack() -> None:
    known = {f"`{service}.{rpc}`" for service, rpc, _ in _rpcs()}
    listed = [row[0] for row in _rows(_section("RPC index"))[1:]]
    assert not [name for name in listed if name not in known], "rows for RPCs that are not in protos/"


@pytest.mark.parametrize("step", sorted(_steps()))
def test_every_pipeline_step_is_named_with_the_module_implementing_it(step: str) -> None:
    target = _steps()[step]
    rows = [row for row in _rows(_section("Pipeline steps")) if row[0] == f"`{step}`"]
    assert len(rows) == 1, f'docs/design.md, "Pipeline steps": one row for `{step}`, found {len(rows)}'
    row = " | ".join(rows[0])
    assert f"`{target}`" in row, f"the row of step {step} does not name `{target}`, the function it runs"
    paths = _paths(row)
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"the row of step {step} names modules that do not exist: {missing}"
    assert any(p.endswith(".py") and _defines_function(ROOT / p, target) for p in paths), (
        f"the row of step {step} names no module that defines {target}"
    )


@pytest.mark.parametrize(
    ("function", "module"),
    [(name, COMPONENTS) for name in sorted(_component_functions())]
    + [(name, PIPELINES) for name in sorted(_pipeline_functions())],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_every_component_and_pipeline_is_named_with_its_module(function: str, module: Path) -> None:
    path = module.relative_to(ROOT).as_posix()
    rows = [
        row
        for row in _rows(_section("Pipeline steps"))
        if f"`{function}`" in " | ".join(row) and path in _paths(" | ".join(row))
    ]
    assert rows, f'docs/design.md, "Pipeline steps": no row names `{function}` with `{path}`'


def test_every_repository_path_the_document_names_exists() -> None:
    missing = sorted({p for p in _ticked(_doc()) if REPO_PATH.match(p) and not (ROOT / p).exists()})
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _doc())
    broken = [link for link in links if "://" not in link and not (DOC.parent / link).exists()]
    assert not broken, f"docs/design.md links to files that do not exist: {broken}"


def test_the_documentation_index_lists_the_design() -> None:
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    assert "(design.md)" in index, "docs/README.md does not link design.md"


# ---------------------------------------------------------------------- tests: citations


def test_every_citation_of_a_design_section_names_one_that_exists() -> None:
    headings = set(_headings())
    slugs = {_slug(h) for h in headings}
    bad = []
    for name, text in (*_tracked_text_files(), ("docs/design.md", _doc())):
        bad += [f'{name}: "{s}"' for s in SECTION_CITATION.findall(text) if s not in headings]
        bad += [f"{name}: #{a}" for a in ANCHOR_LINK.findall(text) if a not in slugs]
    internal = re.findall(r"\]\(#([\w-]+)\)", _doc())
    bad += [f"docs/design.md: #{a}" for a in internal if a not in slugs]
    assert not bad, f"citations of docs/design.md sections that do not exist: {sorted(set(bad))}"


def test_nothing_cites_a_design_file_or_a_path_outside_the_repository() -> None:
    found = [
        f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {what} ({match.group(0)})"
        for name, text in _tracked_text_files()
        for what, pattern in FORBIDDEN.items()
        for match in pattern.finditer(text)
    ]
    assert not found, "cite docs/design.md instead:\n" + "\n".join(found)


def test_every_markdown_file_a_tracked_file_names_exists() -> None:
    files = _tracked_text_files()
    basenames = {Path(name).name for name, _ in files}
    missing = []
    for name, text in files:
        for ref in set(MARKDOWN_REF.findall(text)):
            if ref.startswith("/"):
                exists = False
            elif "/" in ref:
                here = (ROOT / name).parent / ref
                exists = here.exists() or (ROOT / ref).exists()
            else:
                exists = ref in basenames
            if not exists:
                missing.append(f"{name}: {ref}")
    assert not missing, "markdown files named but not in the repository:\n" + "\n".join(sorted(missing))
