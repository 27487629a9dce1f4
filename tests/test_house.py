"""The package's structure: imports flow one way (CLIs -> report/benchmark -> analysis/training
-> data -> core), no import cycles, nothing imports a CLI, environment switches are read in
one module, modules stay readable, and every CLI's --help has one style."""
import ast
import importlib
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "wavetyp"
LAYERS = {"core": 0, "data": 1, "training": 2, "analysis": 2, "report": 3, "benchmark": 3}
CLI_RANK = 4
MAX_LINES = 420


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py")) if "__pycache__" not in p.parts}


def is_cli(mod: str) -> bool:
    parts = mod.split(".")
    return (len(parts) == 2 and parts[1] not in LAYERS) or parts[-1] == "__main__"


def rank(mod: str) -> int:
    parts = mod.split(".")
    if is_cli(mod):
        return CLI_RANK
    return LAYERS[parts[1]] if len(parts) > 1 else -1          # the package __init__


def imports_of(path: Path, mod: str) -> set[str]:
    """Every wavetyp module imported anywhere in the file (function-level imports too)."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name.startswith("wavetyp")}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                pkg = mod.split(".")[: -n.level] if not path.name == "__init__.py" else mod.split(".")
                base = ".".join(pkg + ([base] if base else []))
            if base.startswith("wavetyp"):
                for a in n.names:                # `from wavetyp.core import faststack`: a module
                    sub = f"{base}.{a.name}"
                    out.add(sub if sub in modules() else base)
    return {m for m in out if m in modules()}


def graph() -> dict[str, set[str]]:
    return {m: imports_of(p, m) for m, p in modules().items()}


def test_imports_flow_one_way_and_never_into_a_cli():
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if is_cli(dep):
                bad.append(f"{mod} imports the CLI {dep}")
            elif rank(dep) > rank(mod):
                bad.append(f"{mod} (layer {rank(mod)}) imports upward: {dep} (layer {rank(dep)})")
            elif rank(dep) == rank(mod) and dep.split(".")[1] != mod.split(".")[1] and not is_cli(mod):
                bad.append(f"{mod} imports its sibling layer {dep}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = 1
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)


def test_the_layer_checker_catches_an_upward_import(tmp_path):
    """The checker itself: a core module importing a report module is flagged."""
    fake = PKG / "core" / "typicality.py"
    deps = imports_of(fake, "wavetyp.core.typicality")
    assert all(rank(d) <= 0 for d in deps)
    src = tmp_path / "x.py"
    src.write_text("from wavetyp.report import plots\nfrom wavetyp.sample import main\n")
    got = imports_of(src, "wavetyp.core.x")
    assert "wavetyp.report.plots" in got and "wavetyp.sample" in got
    assert rank("wavetyp.report.plots") > rank("wavetyp.core.x") and is_cli("wavetyp.sample")


def test_environment_switches_are_read_in_one_module():
    from wavetyp.core.runtime import ENV_SWITCHES
    readers = [m for m, p in modules().items() if "os.environ" in p.read_text() or "getenv" in p.read_text()]
    assert readers == ["wavetyp.core.runtime"]
    doc = (PKG.parent / "docs" / "env-switches.md")
    if doc.exists():
        text = doc.read_text()
        assert all(name in text for name in ENV_SWITCHES), "docs/env-switches.md misses a switch"


def test_modules_stay_readable():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


CLIS = ["sample", "score", "evaluate", "train", "demo", "ood", "toys", "bench", "export", "recognize", "listen",
        "data.__main__"]


@pytest.mark.parametrize("name", CLIS)
def test_every_cli_help_shows_each_default_once_and_explains_every_flag(name, capsys):
    mod = importlib.import_module(f"wavetyp.{name}")
    parser = mod.build_parser()
    bare = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not bare, f"flags without help: {bare}"
    own = [a.help for a in parser._actions if a.help and re.search(r"\bdefault\b", a.help.lower())]
    assert not own, f"help texts that state their own default (the formatter adds it): {own}"
    flat = re.sub(r"\s+", " ", parser.format_help())
    assert "(default: None)" not in flat and "(default: False)" not in flat
    device = [a for a in parser._actions if "--device" in a.option_strings]
    assert all(a.default == "auto" for a in device)


def test_no_module_sets_a_matplotlib_backend_or_uses_pyplot():
    """Figures are drawn with matplotlib's object API (Figure + savefig), which needs no backend:
    importing the package never changes the caller's matplotlib state."""
    bad = [m for m, p in modules().items()
           if "matplotlib.use(" in p.read_text() or "matplotlib.pyplot" in p.read_text()]
    assert not bad, bad
