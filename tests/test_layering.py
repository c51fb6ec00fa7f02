"""The package's layering rules, checked on the source.

1. *I/O at the edges* (DESIGN.md, conventions): only :mod:`povertymap.io` opens, writes,
   moves or deletes paths. Every other module under ``src/povertymap/`` is parsed (AST, not
   imported) and each call that touches the file system is reported as ``module:line``
   with the call. What counts is listed explicitly below (:data:`FORBIDDEN_FUNCTIONS`,
   :data:`FORBIDDEN_METHODS`, :data:`FORBIDDEN_WITH_PATH`); the scanner's own behaviour is
   pinned by :func:`test_scanner_flags_and_passes_known_snippets`.
2. Reading a config imports no stage package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "povertymap"

#: Modules (relative to ``src/povertymap``) that still open paths themselves: they are being
#: moved to ``io/`` in the same change, by another engineer. Remove a module from here once it
#: passes; never add one.
PENDING: set[str] = set()

#: Functions that open, write, move or delete a path, by fully qualified name. Calls are
#: resolved through the module's imports (``import numpy as np`` makes ``np.save`` into
#: ``numpy.save``; ``from shutil import rmtree`` makes ``rmtree`` into ``shutil.rmtree``), and
#: a bare ``open(...)`` that is not imported is the builtin.
FORBIDDEN_FUNCTIONS = {
    # builtin and low-level opening
    "builtins.open": "opens a file",
    "io.open": "opens a file",
    "os.open": "opens a file",
    "os.fdopen": "opens a file",
    # rasters and vectors
    "rasterio.open": "opens a raster",
    "rasterio.shutil.copy": "writes a raster",
    "geopandas.read_file": "reads a vector file",
    "geopandas.read_parquet": "reads a GeoParquet file",
    "geopandas.read_feather": "reads a Feather file",
    "pyogrio.read_dataframe": "reads a vector file",
    "pyogrio.write_dataframe": "writes a vector file",
    # tables
    "pandas.read_csv": "reads a CSV file",
    "pandas.read_table": "reads a text table",
    "pandas.read_parquet": "reads a Parquet file",
    "pandas.read_excel": "reads an Excel file",
    "pandas.read_json": "reads a JSON file",
    "pandas.read_feather": "reads a Feather file",
    "pandas.read_pickle": "reads a pickle",
    # serialised objects and arrays
    "joblib.dump": "writes a joblib file",
    "joblib.load": "reads a joblib file",
    "pickle.dump": "writes a pickle to a file object",
    "pickle.load": "reads a pickle from a file object",
    "json.dump": "writes JSON to a file object",
    "json.load": "reads JSON from a file object",
    "numpy.save": "writes a .npy file",
    "numpy.savez": "writes a .npz file",
    "numpy.savez_compressed": "writes a .npz file",
    "numpy.load": "reads a .npy/.npz file",
    "numpy.memmap": "maps a file",
    "numpy.fromfile": "reads a raw file",
    # Keras models
    "keras.models.load_model": "reads a Keras model",
    "keras.saving.load_model": "reads a Keras model",
    "keras.saving.save_model": "writes a Keras model",
    "tensorflow.keras.models.load_model": "reads a Keras model",
    "keras.callbacks.TensorBoard": "writes TensorBoard logs",
    "keras.callbacks.ModelCheckpoint": "writes Keras checkpoints",
    "keras.callbacks.BackupAndRestore": "writes Keras checkpoints",
    "keras.callbacks.CSVLogger": "writes a CSV log",
    # moving, copying and deleting
    "shutil.copy": "copies a file",
    "shutil.copy2": "copies a file",
    "shutil.copyfile": "copies a file",
    "shutil.copytree": "copies a folder",
    "shutil.rmtree": "deletes a folder",
    "shutil.move": "moves a path",
    "os.replace": "moves a path",
    "os.rename": "moves a path",
    "os.remove": "deletes a file",
    "os.unlink": "deletes a file",
    "os.rmdir": "deletes a folder",
    "os.mkdir": "creates a folder",
    "os.makedirs": "creates folders",
    # temporary files and folders
    "tempfile.mkdtemp": "creates a temporary folder",
    "tempfile.mkstemp": "creates a temporary file",
    "tempfile.TemporaryDirectory": "creates a temporary folder",
    "tempfile.NamedTemporaryFile": "creates a temporary file",
    "tempfile.TemporaryFile": "creates a temporary file",
}

#: Methods that touch the file system whatever their receiver (a ``Path``, a dataset, a Keras
#: model): the AST has no types, so any attribute call with one of these names is reported.
FORBIDDEN_METHODS = {
    "open": "opens a path (Path.open, rasterio.open, ...)",
    "read_text": "reads a file (Path.read_text)",
    "write_text": "writes a file (Path.write_text)",
    "read_bytes": "reads a file (Path.read_bytes)",
    "write_bytes": "writes a file (Path.write_bytes)",
    "mkdir": "creates a folder (Path.mkdir)",
    "touch": "creates a file (Path.touch)",
    "unlink": "deletes a file (Path.unlink)",
    "rmdir": "deletes a folder (Path.rmdir)",
    "to_file": "writes a vector file (GeoDataFrame.to_file)",
    "to_feather": "writes a Feather file",
    "to_excel": "writes an Excel file",
    "to_pickle": "writes a pickle",
    "tofile": "writes a raw file (ndarray.tofile)",
    "savefig": "writes a figure (matplotlib Figure.savefig)",
    "load_model": "reads a Keras model (keras.models.load_model)",
}

#: Methods that touch the file system on the objects of a library the module imports:
#: ``model.save(path)`` writes a Keras model where Keras is in reach, while povertymap's own
#: ``MappingModel.save`` is a method whose body this scan checks like any other.
FORBIDDEN_WITH_IMPORT = {
    "save": (("keras", "tensorflow"), "writes a file (keras.Model.save)"),
}

#: Methods that write a file only when given a path (or buffer): ``df.to_csv()`` without
#: one returns a string, ``df.to_parquet()`` bytes. Keyword names that carry the path.
FORBIDDEN_WITH_PATH = {
    "to_csv": ("path_or_buf",),
    "to_parquet": ("path",),
    "to_json": ("path_or_buf",),
}


@dataclass(frozen=True)
class Violation:
    """One call that touches the file system outside ``io/``."""

    module: str
    line: int
    call: str
    why: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.call}  ({self.why})"


def _imports(tree: ast.Module, package: str) -> dict[str, str]:
    """Local name -> fully qualified name, from every import in the module (any scope)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{base}.{alias.name}"
    return names


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _qualified(func: ast.expr, imports: dict[str, str]) -> str | None:
    parts = _dotted(func)
    if parts is None:
        return None
    head = imports.get(parts[0])
    if head is None:
        return f"builtins.{parts[0]}" if len(parts) == 1 else None
    return ".".join([head, *parts[1:]])


def scan_source(source: str, module: str, package: str = "povertymap") -> list[Violation]:
    """Every call in ``source`` that touches the file system (see the module docstring)."""
    tree = ast.parse(source)
    imports = _imports(tree, package)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        call = f"{ast.unparse(node.func)}(...)"
        name = _qualified(node.func, imports)
        why = FORBIDDEN_FUNCTIONS.get(name) if name is not None else None
        if why is None and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr in FORBIDDEN_METHODS:
                why = FORBIDDEN_METHODS[attr]
            elif attr in FORBIDDEN_WITH_IMPORT:
                libraries, reason = FORBIDDEN_WITH_IMPORT[attr]
                if any(v.split(".")[0] in libraries for v in imports.values()):
                    why = reason
            elif attr in FORBIDDEN_WITH_PATH:
                keywords = {k.arg for k in node.keywords}
                if node.args or keywords & set(FORBIDDEN_WITH_PATH[attr]):
                    why = f"writes a file ({attr} with a path)"
        if why is not None:
            found.append(Violation(module, node.lineno, call, why))
    return sorted(found, key=lambda v: v.line)


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "io")


def _name(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def _package(path: Path) -> str:
    parts = ["povertymap", *path.relative_to(SRC).parent.parts]
    return ".".join(parts)


def test_only_io_touches_the_file_system() -> None:
    violations: list[Violation] = []
    for path in _modules():
        if _name(path) in PENDING:
            continue
        source = path.read_text(encoding="utf-8")
        violations += scan_source(source, _name(path), _package(path))
    assert not violations, (
        "only povertymap.io may open, write, move or delete paths; move these calls into an "
        "io module and pass arrays/objects to the stage instead:\n"
        + "\n".join(str(v) for v in violations)
    )


def test_pending_modules_exist() -> None:
    existing = {_name(p) for p in _modules()}
    stale = sorted(PENDING - existing)
    assert not stale, f"PENDING names modules that no longer exist: {stale}; remove them"


FLAGGED = [
    ("open('x.txt')", "open(...)"),
    ("from pathlib import Path\nPath('x').read_text()", "Path('x').read_text(...)"),
    ("p.write_bytes(b'')", "p.write_bytes(...)"),
    ("with path.open('wb') as f: pass", "path.open(...)"),
    ("import rasterio\nrasterio.open(p)", "rasterio.open(...)"),
    ("import geopandas as gpd\ngpd.read_file(p)", "gpd.read_file(...)"),
    ("import geopandas as gpd\ngpd.read_parquet(p)", "gpd.read_parquet(...)"),
    ("import pandas as pd\npd.read_csv(p)", "pd.read_csv(...)"),
    ("from pandas import read_parquet\nread_parquet(p)", "read_parquet(...)"),
    ("import pandas as pd\npd.read_excel(p)", "pd.read_excel(...)"),
    ("gdf.to_file(p, driver='GPKG')", "gdf.to_file(...)"),
    ("df.to_parquet(p)", "df.to_parquet(...)"),
    ("df.to_csv(path_or_buf=p)", "df.to_csv(...)"),
    ("import joblib\njoblib.dump(m, p)", "joblib.dump(...)"),
    ("from joblib import load\nload(p)", "load(...)"),
    ("import numpy as np\nnp.save(p, a)", "np.save(...)"),
    ("import numpy as np\nnp.savez_compressed(p, a=a)", "np.savez_compressed(...)"),
    ("import numpy as np\nwith np.load(p) as z: pass", "np.load(...)"),
    ("import numpy as np\nnp.memmap(p, mode='r')", "np.memmap(...)"),
    ("import json\njson.dump(d, f)", "json.dump(...)"),
    ("import json\njson.load(f)", "json.load(...)"),
    ("import shutil\nshutil.copy2(a, b)", "shutil.copy2(...)"),
    ("from shutil import rmtree\nrmtree(d)", "rmtree(...)"),
    ("import shutil\nshutil.move(a, b)", "shutil.move(...)"),
    ("import tempfile\ntempfile.mkdtemp()", "tempfile.mkdtemp(...)"),
    (
        "import tempfile\nwith tempfile.TemporaryDirectory() as d: pass",
        "tempfile.TemporaryDirectory(...)",
    ),
    ("from tempfile import NamedTemporaryFile as T\nT()", "T(...)"),
    ("import os\nos.replace(a, b)", "os.replace(...)"),
    ("import os\nos.rename(a, b)", "os.rename(...)"),
    ("import os\nos.remove(a)", "os.remove(...)"),
    ("root.mkdir(parents=True)", "root.mkdir(...)"),
    ("import keras\nmodel.save(p)", "model.save(...)"),
    ("import keras\nkeras.models.load_model(p)", "keras.models.load_model(...)"),
    ("import keras\nkeras.saving.load_model(p)", "keras.saving.load_model(...)"),
    ("import keras\nkeras.callbacks.TensorBoard(log_dir=d)", "keras.callbacks.TensorBoard(...)"),
    ("fig.savefig(p, dpi=100)", "fig.savefig(...)"),
]

PASSED = [
    "import json\njson.dumps(d)\njson.loads(s)",
    "df.to_csv()",
    "df.to_parquet()",
    "s.replace('a', 'b')",
    "df.rename(columns={'a': 'b'})",
    "import numpy as np\nnp.asarray(a)",
    "import os\nos.environ.get('X')",
    "from pathlib import Path\nPath('x').exists()",
    "def open_run(p): pass\nopen_run(p)",
    "import pickle\npickle.dumps(x)",
]


@pytest.mark.parametrize(("source", "call"), FLAGGED)
def test_scanner_flags_known_file_access(source: str, call: str) -> None:
    found = scan_source(textwrap.dedent(source), "m.py")
    assert [v.call for v in found] == [call]
    assert found[0].line == source.count("\n") + 1


@pytest.mark.parametrize("source", PASSED)
def test_scanner_passes_code_that_touches_no_file(source: str) -> None:
    assert scan_source(source, "m.py") == []


def test_scanner_resolves_relative_imports() -> None:
    source = "from .. import io\nfrom . import tempfile\ntempfile.mkdtemp()"
    imports = _imports(ast.parse(source), "povertymap.features")
    assert imports == {"io": "povertymap.io", "tempfile": "povertymap.features.tempfile"}
    assert scan_source(source, "m.py", "povertymap.features") == []


STAGES = (
    "povertymap.estimate",
    "povertymap.target",
    "povertymap.features",
    "povertymap.models",
    "povertymap.predict",
    "povertymap.engine",
)


def test_reading_the_config_imports_no_stage_package() -> None:
    code = (
        "import sys, povertymap.config;"
        f"stages = {STAGES!r};"
        "print(','.join(sorted(m for m in sys.modules "
        "if any(m == s or m.startswith(s + '.') for s in stages))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
