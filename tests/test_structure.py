"""The architecture is the top-of-file imports: one direction, no cycle, nothing hidden in functions.

A pipeline stage (a module that imports SymPy: spec -> derive -> rewrite -> select -> render...)
imports the stages it uses at the top of the file. Only the SymPy-free side (the runtime that
loads cached kernels, the CLI, the tools) may import a stage inside a function, to keep SymPy
off the import path of `import actgen` and of a cached load.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "actgen"


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (ast.parse(path.read_text(encoding="utf-8")), path.name == "__init__.py")
    return out


def _imports(name: str, tree: ast.Module, is_package: bool, modules) -> list[tuple[str, bool]]:
    """(imported actgen module, imported at the top of the file) for each import statement."""
    package = name if is_package else name.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in modules else stem for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, id(node) in top) for t in targets if t in modules and t != name]
    return found


def _graph():
    modules = _modules()
    return modules, {name: _imports(name, tree, pkg, modules) for name, (tree, pkg) in modules.items()}


def test_no_import_cycles():
    modules, graph = _graph()
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target, _ in graph[node]:
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for name in modules:
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _imports_sympy(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.Import) and any(a.name == "sympy" for a in n.names)
               or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "sympy" for n in tree.body)


def test_pipeline_stages_import_each_other_at_the_top_only():
    """A stage: a module that imports SymPy at its top, or imports (at its top) one that does."""
    modules, graph = _graph()
    stages = {name for name, (tree, _) in modules.items() if _imports_sympy(tree)}
    while True:
        more = {name for name in modules if any(at_top and t in stages for t, at_top in graph[name])} - stages
        if not more:
            break
        stages |= more
    assert {"actgen.spec", "actgen.derive", "actgen.rewrite", "actgen.select", "actgen.render",
            "actgen.verify", "actgen.pipeline"} <= stages
    assert not {"actgen", "actgen.runtime", "actgen.build", "actgen.cli"} & stages   # SymPy-free imports
    # (actgen.torch and actgen.jax import an optional framework at their top: importing them where
    # the framework is used is how an optional dependency stays optional, not a hidden cycle)
    optional = {"actgen.torch", "actgen.jax"}
    hidden = [f"{name} imports {target} inside a function" for name in sorted(stages)
              for target, at_top in graph[name] if not at_top and target not in optional]
    assert not hidden, "\n".join(hidden)


def main() -> None:
    """``python tests/test_structure.py``: each module with the actgen modules it imports at its
    top, in an order where every module comes after what it imports, and the function-local
    imports beside them (the graph the README's Layout draws)."""
    modules, graph = _graph()
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        for target, at_top in sorted(graph[name]):
            if at_top:
                visit(target)
        order.append(name)

    for name in sorted(modules):
        visit(name)
    for name in order:
        top = sorted({t.removeprefix("actgen.") for t, at_top in graph[name] if at_top})
        inside = sorted({t.removeprefix("actgen.") for t, at_top in graph[name] if not at_top} - set(top))
        print(f"{name.removeprefix('actgen.') or 'actgen'}: {', '.join(top) or '-'}"
              + (f"  [in functions: {', '.join(inside)}]" if inside else ""))


if __name__ == "__main__":
    main()


def test_every_actgen_name_the_benchmark_scripts_import_exists():
    """The committed commands behind the docs' numbers (benchmarks/*.py) import actgen's modules,
    often inside functions, where nothing else runs them: a module split left corpus.py importing
    ``machine`` from actgen.bench after it had moved to actgen.benchmark.machine."""
    import importlib
    import importlib.util

    missing = []
    for path in sorted((PACKAGE.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "actgen":
                module = importlib.import_module(node.module)
                missing += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                            if not hasattr(module, a.name)
                            and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert not missing, missing
