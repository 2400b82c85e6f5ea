#!/usr/bin/env python3
"""The shape of src/, checked on every test run:
- no import cycle between top-level modules (from `crate::x` paths, `use crate::{a, b}` too),
  nor between the files of one folder (from `super::x` and `crate::folder::x` paths);
- `config` (the file model) imports nothing else of the crate;
- nothing imports `server` or `cli` but `cli` itself (they are the top of the graph);
- no source file holds more than MAX_LINES lines of non-test code.
Prints the module graph and exits 1 on any violation."""
import pathlib
import re
import sys

MAX_LINES = 450
SRC = pathlib.Path(__file__).resolve().parent.parent / "src"


def top_module(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def non_test_code(text: str) -> str:
    """The text before the file's `#[cfg(test)]` module, without comments and blank lines."""
    head = text.split("#[cfg(test)]", 1)[0]
    lines = [l for l in head.splitlines() if l.strip() and not l.strip().startswith("//")]
    return "\n".join(lines)


def is_test_file(path: pathlib.Path) -> bool:
    """A module file that is itself the test module (`#[cfg(test)] mod tests;` beside it)."""
    parent = path.parent / "mod.rs"
    return (
        path.name == "tests.rs"
        and parent.exists()
        and re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod tests;", parent.read_text()) is not None
    )


def crate_refs(code: str) -> set[str]:
    refs = set(re.findall(r"\bcrate::([a-z_][a-z0-9_]*)", code))
    for group in re.findall(r"\bcrate::\{([^}]*)\}", code, flags=re.S):
        refs.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    return refs


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def folder_graphs() -> dict[str, dict[str, set[str]]]:
    """Per folder of src/ (nested folders too), which of its parts use which sibling. A part
    is a file (`mod.rs` is the folder itself, not a part) or a sub-folder, whose files'
    references are its own; a reference is `super::x` from a file of the folder,
    `super::super::x` from a file of a sub-folder, or `crate::<folder path>::x`."""
    graphs: dict[str, dict[str, set[str]]] = {}
    for folder in sorted(d for d in SRC.rglob("*") if d.is_dir()):
        rel = folder.relative_to(SRC).as_posix()
        crate_path = rel.replace("/", "::")
        files = {f.stem: [f] for f in folder.glob("*.rs") if f.name != "mod.rs"}
        subs = {d.name: sorted(d.rglob("*.rs")) for d in folder.iterdir() if d.is_dir()}
        parts = {**files, **subs}
        graph: dict[str, set[str]] = {}
        for name, paths in parts.items():
            refs: set[str] = set()
            for path in paths:
                code = non_test_code(path.read_text())
                depth = len(path.relative_to(folder).parts)  # 1: a file of the folder
                prefix = r"\b" + "super::" * depth
                refs |= set(re.findall(prefix + r"([a-z_][a-z0-9_]*)", code))
                refs |= set(re.findall(rf"\bcrate::{crate_path}::([a-z_][a-z0-9_]*)", code))
                for group in re.findall(prefix + r"\{([^}]*)\}", code, flags=re.S):
                    refs.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
            graph[name] = {r for r in refs if r in parts and r != name}
        graphs[rel] = graph
    return graphs


def main() -> int:
    graph: dict[str, set[str]] = {}
    problems = []
    for path in sorted(SRC.rglob("*.rs")):
        if path.name in ("lib.rs", "main.rs"):
            continue
        code = "" if is_test_file(path) else non_test_code(path.read_text())
        module = top_module(path)
        deps = {d for d in crate_refs(code) if d != module}
        graph.setdefault(module, set()).update(deps)
        lines = code.count("\n") + 1 if code else 0
        if lines > MAX_LINES:
            problems.append(f"{path.relative_to(SRC.parent)}: {lines} lines of non-test code (max {MAX_LINES})")
    for module, deps in sorted(graph.items()):
        print(f"  {module:<10} -> {', '.join(sorted(deps)) or '(nothing)'}")
    if graph.get("config"):
        problems.append(f"config imports {sorted(graph['config'])}: it must import nothing of the crate")
    for module, deps in graph.items():
        for top in ("server", "cli"):
            if top in deps and module != "cli":
                problems.append(f"{module} imports {top}: nothing but cli may")
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    for folder, files in folder_graphs().items():
        cycle = find_cycle(files)
        if cycle:
            problems.append(f"import cycle in {folder}/: " + " -> ".join(cycle))
    for p in problems:
        print(f"structure: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
