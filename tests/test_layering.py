"""Imports point down: a module imports only from its own layer or the layers below it (imports inside functions
count too), and the packages of one layer do not import each other in a cycle. Parses the source; imports nothing.

When a lower room needs something from a higher one, the thing belongs lower (STYLE.md, "Layers that point one way").
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "schemas", "jobs")

# bottom to top; a name stands for that module or package and everything under it
LAYERS = [
    ["pipeline.errors", "pipeline", "pipeline.trace"],  # the package's __init__ (version), start-up trace marks
    ["schemas"],  # the formats: table schemas, the manifest and its shard plan
    ["pipeline.io"],  # storage, shard files, codec, path resolution: imports only schemas, errors and itself
    ["pipeline.config", "pipeline.ray_utils", "pipeline.modeling", "pipeline.tiny"],  # model/tokenizer loading
    ["pipeline.losses"],
    ["pipeline.capture", "pipeline.align", "pipeline.train", "pipeline.publish"],  # the jobs: never each other
    ["pipeline.inspect", "pipeline.bench"],
    ["pipeline.registry"],  # the job list: names the jobs below it (lazily, by ``module:attribute``)
    ["pipeline.cluster"],
    ["pipeline.commands", "pipeline.cli", "jobs"],
]
LEVEL = {unit: i for i, units in enumerate(LAYERS) for unit in units}
# packages that know the layers below them and nothing of each other (not even without a cycle)
INDEPENDENT = {"pipeline.capture", "pipeline.align", "pipeline.train", "pipeline.publish"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str | None:
    """The layer entry that owns ``module`` (the longest matching name)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LEVEL and (name != "pipeline" or module == "pipeline"):
            return name
    return None


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(path: Path, module: str, known: set[str]):
    """(line, text, imported module) of every first-party import in the file, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, f"import {alias.name}", alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            text = f"from {'.' * node.level}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, text, sub if sub in known else base


def edges():
    """(module, path, line, text, target, unit, target unit) for every first-party import."""
    mods = modules()
    for module, path in mods.items():
        for line, text, target in imports(path, module, set(mods)):
            if target.split(".")[0] in PACKAGES:
                yield module, path, line, text, target, unit_of(module), unit_of(target)


def test_every_module_has_a_layer():
    missing = sorted(m for m in modules() if unit_of(m) is None)
    assert not missing, f"modules in no layer of tests/test_layering.py LAYERS (add them): {missing}"


def test_no_module_imports_from_a_layer_above_it():
    bad = [f"{path.relative_to(ROOT)}:{line}: {module} (layer {LEVEL[unit]}, {unit}) `{text}` reaches {target} "
           f"(layer {LEVEL[tunit]}, {tunit})"
           for module, path, line, text, target, unit, tunit in edges()
           if unit and tunit and LEVEL[tunit] > LEVEL[unit]]
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def test_io_imports_only_schemas_errors_and_io():
    allowed = ("pipeline.io", "pipeline.errors", "schemas")
    bad = [f"{path.relative_to(ROOT)}:{line}: {module} `{text}`"
           for module, path, line, text, target, unit, _ in edges()
           if unit == "pipeline.io" and not any(target == a or target.startswith(a + ".") for a in allowed)]
    assert not bad, "pipeline.io is the bottom layer; it imports only schemas, pipeline.errors and pipeline.io:\n" + \
        "\n".join(bad)


def test_the_jobs_import_nothing_of_each_other():
    bad = [f"{path.relative_to(ROOT)}:{line}: {module} `{text}` reaches {target}"
           for module, path, line, text, target, unit, tunit in edges()
           if unit in INDEPENDENT and tunit in INDEPENDENT and unit != tunit]
    assert not bad, "capture, align, train and publish know the layers below them, never each other (move the " \
        "shared piece down):\n" + "\n".join(bad)


def test_packages_of_one_layer_form_no_cycle():
    graph, where = defaultdict(set), {}
    for module, path, line, text, target, unit, tunit in edges():
        if unit and tunit and unit != tunit and LEVEL[unit] == LEVEL[tunit]:
            graph[unit].add(tunit)
            where.setdefault((unit, tunit), f"{path.relative_to(ROOT)}:{line}: {module} `{text}`")

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    return trail + [start]
                if nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
        return None

    for unit in list(graph):
        cycle = cycle_from(unit)
        assert cycle is None, "import cycle between packages of one layer: " + " -> ".join(cycle) + "\n" + \
            "\n".join(where[a, b] for a, b in zip(cycle, cycle[1:]))


def test_the_check_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text("import os\n\ndef f():\n    from pipeline.train.job import run_train\n")
    assert list(imports(src, "pipeline.io.mod", set())) == [(1, "import os", "os"),
                                                          (4, "from pipeline.train.job import run_train",
                                                           "pipeline.train.job")]
