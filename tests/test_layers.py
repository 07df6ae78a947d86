"""The packages only look down, and no module imports itself in a circle.

    musicllm        the model library: imports no application package
    data_gen        musicllm
    training        musicllm, data_gen              (never eval: quickstart runs `musicllm eval suite`)
    serve           musicllm                        (never training: only `demo` builds a missing
                                                     default model, by running `musicllm quickstart`)
    eval            all of the above (its benchmarks measure serving and training)

and inside serve, its subsystems: catalog/ (the bottom), gateway/ (uses the catalog for
/v1/recommend), web/ (a client of the gateway: its wire format only), then the commands
(serve/chat.py, recommend_cli.py, demo.py), which may use them all.

Every import counts, also one inside a function (a lazy import is still a dependency). The verb
table of the `musicllm` command (musicllm/cli.py) names each verb's module as a string: that is
the entry point's job and no import.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAY_IMPORT = {
    "musicllm": set(),
    "data_gen": {"musicllm"},
    "training": {"musicllm", "data_gen"},
    "serve": {"musicllm"},
    "eval": {"musicllm", "data_gen", "training", "serve"},
}

SERVE_MAY_IMPORT = {
    "serve.catalog": {"serve.catalog"},
    "serve.gateway": {"serve.catalog", "serve.gateway"},
    "serve.web": {"serve.gateway.openai_format", "serve.web"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package in MAY_IMPORT:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (a name imported from a package counts as the
    submodule when there is one: `from serve import chat` imports serve.chat)."""
    known = modules()

    def owner(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph = defaultdict(set)
    for module, path in known.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, `level - 1` folders up
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            graph[module] |= {target for target in map(owner, names) if target and target != module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other (Tarjan's strongly connected components, size > 1)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_packages_import_only_the_layers_below():
    upward = [f"{module} imports {target}" for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if target.split(".")[0] != module.split(".")[0]
              and target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]]
    assert upward == [], "imports against the layering (tests/test_layers.py says which are allowed):\n" + "\n".join(upward)


def test_serve_subsystems_import_only_the_ones_below():
    def allowed(module: str, target: str) -> bool:
        folder = next((f for f in SERVE_MAY_IMPORT if module.startswith(f + ".")), None)
        return folder is None or any(target == ok or target.startswith(ok + ".") for ok in SERVE_MAY_IMPORT[folder])

    upward = [f"{module} imports {target}" for module, targets in sorted(import_graph().items()) for target in sorted(targets)
              if module.startswith("serve.") and target.startswith("serve.") and not allowed(module, target)]
    assert upward == [], "imports against serve's layering (tests/test_layers.py says which are allowed):\n" + "\n".join(upward)


def test_no_module_imports_itself_in_a_circle():
    assert cycles(import_graph()) == []


def test_the_check_sees_lazy_relative_and_circular_imports(tmp_path, monkeypatch):
    """The checker itself: an import inside a function, a relative import and a cycle are found."""
    for package in MAY_IMPORT:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "musicllm" / "a.py").write_text("def f():\n    from serve import chat\n")
    (tmp_path / "serve" / "chat.py").write_text("from . import web\n")
    (tmp_path / "serve" / "web.py").write_text("import serve.chat\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    graph = import_graph()
    assert graph["musicllm.a"] == {"serve", "serve.chat"} and graph["serve.chat"] == {"serve", "serve.web"}
    assert cycles(graph) == [["serve.chat", "serve.web"]]
