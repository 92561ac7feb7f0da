"""The package map's rules (docs/ARCHITECTURE.md), checked on the source itself.

Each rule is one a refit settled; these tests keep the next change from
quietly undoing it.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import graderqueue
import graderserver

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [graderqueue, graderserver]

# A module over ~400 lines or a function over ~50 needs a reason, written here.
MODULE_LINES = 400
FUNCTION_LINES = 56  # ~50 lines of code and its docstring
LONG_MODULES: dict[str, str] = {
    "graderqueue/store/migrations/versions/0001_initial_schema.py": (
        "a migration is one linear script of the schema it creates"
    ),
    "graderqueue/store/models.py": "the whole schema, one class per table, read in one place",
}
LONG_FUNCTIONS: dict[str, str] = {
    "graderqueue/store/migrations/versions/0001_initial_schema.py:upgrade": "see LONG_MODULES",
    "graderqueue/store/migrations/versions/0001_initial_schema.py:downgrade": "see LONG_MODULES",
    "graderserver/cli.py:build_parser": "one add_argument per option, in --help's order",
}


def _sources(package_dir: str) -> list[Path]:
    return sorted((ROOT / package_dir).rglob("*.py"))


def _all_sources() -> list[Path]:
    return [path for package in PACKAGES for path in _sources(package.__name__)]


def test_every_module_imports():
    """A module nobody imports at start-up (a CLI group, a migration helper) still loads."""
    for package in PACKAGES:
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations.versions." in module.name or module.name.endswith(".migrations.env"):
                continue  # Alembic loads these itself, inside a migration context
            if module.name.endswith(".__main__") or module.name == "graderqueue.wsgi":
                continue  # run the CLI, or build the app from the environment (gunicorn's)
            importlib.import_module(module.name)


def test_modules_and_functions_stay_short_or_say_why():
    too_long = []
    for path in _all_sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MODULE_LINES and rel not in LONG_MODULES:
            too_long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES and f"{rel}:{node.name}" not in LONG_FUNCTIONS:
                    too_long.append(f"{rel}:{node.name}: {length} lines")
    assert not too_long, "split these, or say why in LONG_MODULES/LONG_FUNCTIONS:\n" + "\n".join(
        too_long
    )


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("graderqueue", "graderserver")])
def test_the_queue_never_imports_the_daemon(package, forbidden):
    """What both need lives where both import it; a grading server is not a queue's library."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _sources(package)
        for name in _imports(path)
        if name == forbidden or name.startswith(forbidden + ".")
    ]
    assert not offenders


def test_web_holds_no_sql():
    """web/ is the Flask app and thin views; queries live in the packages they serve."""
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _sources("graderqueue/web")
        for name in _imports(path)
        if name == "sqlalchemy" or name.startswith("sqlalchemy.")
    ]
    assert not offenders


STATUS_WRITE = re.compile(r"""status\s*=\s*JobStatus\.|["']status["']\s*:\s*JobStatus\.""")


def test_only_the_queue_package_writes_a_jobs_status():
    """queue/ is the job's state machine: enqueue, claim, complete and states.py."""
    offenders = []
    for path in _sources("graderqueue"):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("graderqueue/queue/", "graderqueue/store/migrations/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if STATUS_WRITE.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_error_codes_are_made_only_in_errors_py():
    """Views raise QueueError subclasses or answer success(); no literal codes elsewhere."""
    offenders = []
    for path in _sources("graderqueue/web"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", "") in ("answer", "_answer")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders


def test_every_exception_class_is_in_the_one_tree():
    """Every exception the queue defines derives from errors.QueueError (errors.py's map)."""
    from graderqueue.errors import QueueError

    outside = []
    for path in _sources("graderqueue"):
        if ".migrations." in path.as_posix().replace("/", ".") or path.name in (
            "__main__.py",
            "wsgi.py",
        ):
            continue
        module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module_name.endswith(".__init__"):
            module_name = module_name[: -len(".__init__")]
        module = importlib.import_module(module_name)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                cls = getattr(module, node.name, None)
                if (
                    isinstance(cls, type)
                    and issubclass(cls, BaseException)
                    and not issubclass(cls, QueueError)
                ):
                    outside.append(f"{module_name}.{node.name}")
    assert not outside
