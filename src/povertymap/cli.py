"""The ``povertymap`` command line: thin commands that compose library calls.

User errors (bad config, bad input files) exit with code 2 and one line on stderr;
``povertymap --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from povertymap import __version__
from povertymap.engine.base import ProgressCallback
from povertymap.errors import InputWarning, PovertyMapError

app = typer.Typer(
    name="povertymap",
    help="Map poverty from household surveys and open geospatial data, and plan targeting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


class _Invocation:
    """Options of the current command line, set by the top-level callback on every call."""

    debug = False


def _user_errors(func: F) -> F:
    """Turn a PovertyMapError into one red line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except PovertyMapError as exc:
            if _Invocation.debug:
                raise
            message = escape(str(exc))  # messages hold brackets: povertymap[dl], band[1]
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def _progress() -> Iterator[ProgressCallback]:
    """A rich progress bar driven by the library's ``progress(step, done, total)`` calls."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def _version(value: bool) -> None:
    if value:
        console.print(f"povertymap {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """povertymap: poverty maps with honest uncertainty, and the targeting plans they support."""
    _Invocation.debug = debug
    # Our own log at WARNING (-v: INFO, -vv: DEBUG); libraries (GDAL via rasterio, ...) only
    # at ERROR unless -vv, since their warnings repeat what our typed errors say better.
    logging.basicConfig(
        level=logging.DEBUG if verbose >= 2 else logging.ERROR,
        format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=False)],
        force=True,
    )
    logging.getLogger("povertymap").setLevel(logging.WARNING - 10 * min(verbose, 2))
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Input warnings as one yellow line on stderr; others as Python prints them."""
    if issubclass(category, InputWarning):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


@app.command()
@_user_errors
def validate(
    config: Annotated[Path, typer.Argument(help="Study-area YAML file.")],
) -> None:
    """Load a study-area config and every input it names, and summarise them.

    Prints a table of sources (CRS, size, resolution, rows) and any problems found;
    exits 0 if the study area is usable, 2 with a one-line error otherwise.

    Example: povertymap validate data/demo/study.yaml
    """
    from povertymap.io.configfile import read_config
    from povertymap.validation import validate as run_validation

    cfg = read_config(config)
    with _progress() as progress:
        report = run_validation(cfg, progress=progress)
    table = Table(title=f"study area {cfg.name!r} (working CRS {report.area.crs.to_string()})")
    for col in ("source", "file", "kind", "CRS", "size", "resolution", "contents", "problems"):
        table.add_column(col, overflow="fold")
    for s in report.sources:
        table.add_row(
            s.key,
            s.path,
            s.kind,
            s.crs,
            s.size,
            s.resolution,
            s.rows,
            "[yellow]" + "; ".join(s.problems) + "[/]" if s.problems else "ok",
        )
    console.print(table)
    for problem in report.problems:
        console.print(f"[yellow]problem:[/] {problem}", soft_wrap=True)
    if report.area.admin is None:
        console.print("no boundaries: `povertymap evaluate` only (a map needs admin units)")
    else:
        from povertymap.runplan import plan_run

        plan = Table(title="run plan (povertymap run)")
        for col in ("stage", "runs", "needs", "why not"):
            plan.add_column(col, overflow="fold")
        for step in plan_run(report.area).steps:
            runs = "yes" if step.runs else "[yellow]skipped[/]"
            plan.add_row(step.name, runs, step.needs, step.why_not if not step.runs else "")
        console.print(plan)
    n = len(report.problems)
    console.print(
        f"usable: {len(report.sources)} sources, {n} problem(s) to review"
        if n
        else f"usable: {len(report.sources)} sources, no problems"
    )


@app.command()
@_user_errors
def info(run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<run_id>).")]) -> None:
    """Describe a run: its inputs, outputs, headline metrics, and whether files are intact.

    Example: povertymap info runs/demo-20261130T120000Z-1a2b3c
    """
    from povertymap.rundir import open_run

    run = open_run(run_dir)
    m = run.manifest
    console.print(
        f"[bold]{run.run_id}[/]  {run.kind}, created {m.get('created', '?')}  "
        f"povertymap {m.get('version', '?')}"
    )
    inputs = Table(title="inputs")
    for col in ("key", "file", "sha256", "bytes"):
        inputs.add_column(col)
    for key, meta in m.get("inputs", {}).items():
        inputs.add_row(key, Path(meta["path"]).name, meta["sha256"][:12], f"{meta['bytes']:,}")
    console.print(inputs)
    files = Table(title="outputs")
    for col in ("file", "sha256", "bytes"):
        files.add_column(col)
    for rel, meta in m.get("files", {}).items():
        files.add_row(rel, meta["sha256"][:12], f"{meta['bytes']:,}")
    console.print(files)
    if run.has("metrics.json"):
        cv = run.metrics().get("cv", {})
        if cv:
            r2, rho = cv.get("r2", float("nan")), cv.get("spearman", float("nan"))
            console.print(
                f"cross-validation ({cv.get('scheme')}, {cv.get('folds')} folds): "
                f"r2 {r2:.3f}, spearman {rho:.3f}"
            )
    bad = run.verify()
    if bad:
        from povertymap.errors import RunDirError

        raise RunDirError(
            f"{run.path}: {len(bad)} file(s) differ from the manifest: {', '.join(bad)}"
        )
    console.print("all files match the manifest")


def _say(text: str) -> None:
    console.print(text, soft_wrap=True, highlight=False)


DEMO_DIR = Path("data/demo")
RUNS_DIR = Path("runs")


def _demo_config() -> tuple[Path, Path]:
    """The demo country's config (generated on first use) and its truth folder."""
    from povertymap.world import generate

    study = DEMO_DIR / "study.yaml"
    if not study.exists():
        err_console.print(f"generating the demo country into {DEMO_DIR} (once)...")
        with _progress() as progress:
            generate("demo", seed=7, out=DEMO_DIR, progress=progress)
    return study, DEMO_DIR / "truth"


NoTrackOption = Annotated[
    bool,
    typer.Option(
        "--no-track",
        help="Do not log the run to MLflow (default store: sqlite:///<runs folder>/mlflow.db; "
        "POVERTYMAP_TRACKING_URI or MLFLOW_TRACKING_URI override).",
    ),
]


def _track(path: Path, enabled: bool) -> None:
    """Log a finished run directory to MLflow (extra ``mlops``); a hint when absent."""
    if not enabled:
        return
    from povertymap.errors import DependencyError

    try:
        from povertymap.mlops.tracking import log_run, tracking_uri

        mlflow_run = log_run(path)
    except DependencyError:
        err_console.print(
            "[yellow]warning:[/] not tracked: install povertymap\\[mlops] for MLflow "
            "tracking, or pass --no-track",
            soft_wrap=True,
        )
        return
    _say(f"tracked: MLflow run {mlflow_run} in {tracking_uri(path.parent)}")


@app.command()
@_user_errors
def world(
    out: Annotated[Path, typer.Option(help="Folder to write the country into.")],
    preset: Annotated[str, typer.Option(help="tiny (tests), demo, or large.")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 7,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing if OUT/study.yaml exists.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUT.")] = False,
    imagery: Annotated[
        str,
        typer.Option(help="uint8 (8-bit) or sentinel2 (16-bit L2A-like with an SCL mask)."),
    ] = "uint8",
    imagery_coverage: Annotated[
        float, typer.Option(help="Share of the country's width the imagery covers, from west.")
    ] = 1.0,
    survey_round: Annotated[
        int,
        typer.Option(
            "--round",
            min=1,
            help="Survey round: 2 writes a later round of the same country (growth, new "
            "lights, roads and households, a new survey sample) with its truth.",
        ),
    ] = 1,
    lights_gain: Annotated[
        float,
        typer.Option(help="Recalibrate the nightlight product by this factor (sensor change)."),
    ] = 1.0,
    real_formats: Annotated[
        bool,
        typer.Option(
            "--real-formats",
            help="Also write the survey as DHS files, the boundaries as a GADM GeoPackage and "
            "roads and POIs as an OSM extract (OUT/formats/), read by OUT/study-real-formats.yaml.",
        ),
    ] = False,
) -> None:
    """Simulate a synthetic country with ground truth and write its input files.

    Writes OUT/study.yaml with rasters, vectors and survey files a real user would bring,
    and OUT/truth/ with what real data never has (true poverty of every cell).

    Example: povertymap world --preset demo --seed 7 --out data/demo
    """
    from povertymap.world import generate
    from povertymap.world.formats import write_real_formats

    if if_missing and (out / "study.yaml").exists():
        _say(f"{out / 'study.yaml'} exists; not regenerated")
        return
    with _progress() as progress:
        study = generate(
            preset,
            seed=seed,
            out=out,
            progress=progress,
            overwrite=overwrite,
            imagery=imagery,
            imagery_coverage=imagery_coverage,
            survey_round=survey_round,
            lights_gain=lights_gain,
        )
    _say(f"wrote {study} (truth in {out / 'truth'})")
    if real_formats:
        _say(f"wrote {write_real_formats(out, overwrite=overwrite)} (DHS, GADM, OSM)")


@app.command()
@_user_errors
def run(
    config: Annotated[
        Path | None, typer.Argument(help="Study-area YAML; default: the demo country.")
    ] = None,
    runs: Annotated[Path, typer.Option("--out", help="Folder of run directories.")] = RUNS_DIR,
    truth: Annotated[
        Path | None,
        typer.Option(help="A synthetic country's truth/ folder, to score the finished map."),
    ] = None,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also cross-validate and map the tabular, random-"
            "feature, transfer-CNN and stacked models, side by side.",
        ),
    ] = False,
    no_track: NoTrackOption = False,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Where kernels run: local or spark (overrides features.engine; the Spark "
            "master comes from features.spark_master or POVERTYMAP_SPARK_MASTER, default "
            "local[*]).",
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes of the local engine (overrides features.n_jobs; the "
            "numbers are the same whatever the value).",
        ),
    ] = None,
) -> None:
    """Map poverty: features, cross-validated model, map, admin estimates, report.

    Without CONFIG, maps the embedded demo country (generated on first use) and scores
    the map against its ground truth. Prints the run directory and the headline figures.

    Example: povertymap run data/demo/study.yaml --out runs
    """
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import run as run_job

    if config is None:
        config, truth = _demo_config()
    cfg = read_config(config)
    overrides: dict[str, Any] = {}
    if engine is not None:
        from povertymap.engine.base import ENGINES
        from povertymap.errors import ConfigError

        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}", fix=f"use --engine {'|'.join(ENGINES)}")
        overrides["engine"] = engine
    if jobs is not None:
        overrides["n_jobs"] = jobs
    if overrides:
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update=overrides)})
    with _progress() as progress:
        result = run_job(cfg, runs=runs, truth=truth, compare=compare, progress=progress)
    _headline(result.path, result.metrics)
    _track(result.path, not no_track)


def _standardized(cv: dict[str, Any]) -> str:
    """What a CV figure is on when the target was standardised within groups."""
    by = cv.get("target_standardized_by")
    return f" (on the target standardised within {by}, not the pooled index)" if by else ""


def _headline(path: Path, metrics: dict[str, Any]) -> None:
    cv = metrics["cv"]
    models = cv.get("models", {})
    _say(f"run directory: {path}")
    line = f"{cv['scheme']} cross-validation ({cv['folds']} folds): r2 {cv['r2']:.3f}"
    if "baseline" in models:
        line += f" (nightlights only {models['baseline']['r2']:.3f})"
    if "random_cv" in cv:
        line += f"; random folds would claim {cv['random_cv']['r2']:.3f}"
    _say(line + _standardized(cv))
    if cv.get("noise_share", 0.0) > 0:
        _say(
            f"expected map r2 {cv['r2_noise_removed']:.3f} (cross-validation with the "
            f"clusters' sampling noise removed: {cv['noise_share']:.0%} of their variance)"
        )
    dark = cv.get("by_group", {}).get("lights", {}).get("dark")
    if dark and "r2" in dark:
        _say(f"dark clusters (no nightlights): r2 {dark['r2']:.3f} over {int(dark['n'])}")
    truth = metrics.get("truth")
    if truth and "estimate" in truth:
        t = truth["estimate"]
        _say(
            f"map vs true cell values: r2 {t['all']['r2']:.3f} over {truth['n_cells']} "
            f"populated cells" + (f", dark cells {t['dark']['r2']:.3f}" if "dark" in t else "")
        )
    report = path / "report.html"
    if report.exists():
        _say(f"report: {report}")


@app.command()
@_user_errors
def evaluate(
    config: Annotated[Path, typer.Argument(help="Study-area YAML (survey + features).")],
    cv: Annotated[str | None, typer.Option(help="spatial, random or group.")] = None,
    group: Annotated[
        str | None, typer.Option(help="Survey column for --cv group (e.g. fold, region).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Folds for spatial/random CV.")] = None,
    block_size: Annotated[
        float | None,
        typer.Option(min=1, help="Spatial block edge in metres (overrides the config)."),
    ] = None,
    buffer: Annotated[
        float | None,
        typer.Option(min=0, help="Buffer around test blocks in metres (overrides)."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (must not exist).")] = None,
    redisplace: Annotated[
        int,
        typer.Option(
            help="Also re-displace the clusters this many times (DHS rules) "
            "and report how the CV r2 moves; needs boundaries."
        ),
    ] = 0,
    no_track: NoTrackOption = False,
) -> None:
    """Cross-validate the configured model only: metrics.json and out-of-fold predictions.

    Works with configs holding just survey clusters and precomputed feature tables; the
    way to benchmark a feature set.

    Example: povertymap evaluate examples/lsms-africa/build/study.yaml --cv group --group fold
    """
    from datetime import UTC, datetime

    from povertymap.io.configfile import read_config
    from povertymap.pipeline import evaluate as evaluate_job

    cfg = read_config(config)
    overrides = {"block_size_m": block_size, "buffer_m": buffer}
    if any(v is not None for v in overrides.values()):
        changed = {k: v for k, v in overrides.items() if v is not None}
        cfg = cfg.model_copy(update={"cv": cfg.cv.model_validate(cfg.cv.model_dump() | changed)})
    if cv is not None and cv not in ("spatial", "random", "group"):
        from povertymap.errors import ConfigError

        raise ConfigError(f"--cv {cv!r} is not a scheme", fix="use spatial, random or group")
    scheme = cv or cfg.cv.scheme
    if out is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RUNS_DIR / f"{cfg.name}-evaluate-{scheme}{'-' + group if group else ''}-{stamp}"
    with _progress() as progress:
        result = evaluate_job(
            cfg,
            out=out,
            scheme=cv,
            group=group,
            n_folds=folds,
            redisplace=redisplace,
            progress=progress,
        )
    m = result.metrics["cv"]
    _say(f"wrote {result.path}")
    _say(
        f"{m['scheme']} CV ({m['folds']} folds, {int(m['n'])} clusters): r2 {m['r2']:.3f}, "
        f"spearman {m['spearman']:.3f}, rmse {m['rmse']:.3g}{_standardized(m)}"
    )
    d = result.metrics.get("displacement")
    if d:
        _say(
            f"re-displaced {d['draws']} times: r2 moves by {d['mean_change']:+.3f} on average "
            f"(sd {d['sd']:.3f}, largest {d['max_abs_change']:.3f})"
        )
    _track(result.path, not no_track)


@app.command()
@_user_errors
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `run`.")],
    config: Annotated[Path, typer.Argument(help="Study-area YAML of the area to map.")],
    runs: Annotated[Path, typer.Option("--out", help="Folder of run directories.")] = RUNS_DIR,
) -> None:
    """Map a new study area with the model saved in RUN_DIR (no survey needed).

    Example: povertymap predict runs/demo-20261130T120000Z-1a2b3c other/study.yaml
    """
    from povertymap.io.configfile import read_config
    from povertymap.pipeline import predict as predict_job

    with _progress() as progress:
        result = predict_job(run_dir, read_config(config), runs=runs, progress=progress)
    _say(f"run directory: {result.path}")
    _say(f"mapped {result.metrics['n_cells']:,} cells, {result.metrics['population']:,.0f} people")


@app.command()
@_user_errors
def target(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `run`.")],
    budget: Annotated[
        str | None,
        typer.Option(
            help="30% of people, '120000' people, '25000 households', or "
            "'2000000 @ 25/person' (money at a cost per person)."
        ),
    ] = None,
    unit: Annotated[str | None, typer.Option(help="cell or admin2.")] = None,
    method: Annotated[str | None, typer.Option(help="geographic, pmt or hybrid.")] = None,
    uncertainty: Annotated[
        bool, typer.Option("--uncertainty", help="Rank by the predictive distribution.")
    ] = False,
    rank_by: Annotated[
        str | None,
        typer.Option(help="headcount, expected_poor, probability or estimate (lowest first)."),
    ] = None,
) -> None:
    """Plan who gets help within a budget, and say what the plan costs in poor people missed.

    Writes RUN_DIR/targeting.csv (one row per cell, admin area or household: selected,
    rank, population, expected poor, cost), replaces the report's targeting section and
    prints the headline. Options default to the run config's targeting settings.

    Example: povertymap target runs/demo-20261130T120000Z-1a2b3c --budget 30% --unit admin2
    """
    from pydantic import ValidationError

    from povertymap.errors import ConfigError
    from povertymap.pipeline import target as target_job
    from povertymap.rundir import open_run

    run = open_run(run_dir)
    base = run.targeting_settings()
    changes: dict[str, object] = {
        k: v
        for k, v in {"unit": unit, "method": method, "rank_by": rank_by}.items()
        if v is not None
    }
    if uncertainty:
        changes["uncertainty"] = True
    try:
        settings = base.model_validate({**base.model_dump(), **changes})
    except ValidationError as exc:
        raise ConfigError(
            f"bad targeting option: {exc.errors()[0]['msg']}",
            fix="use --unit cell|admin2, --method geographic|pmt|hybrid and --rank-by "
            "headcount|expected_poor|probability|estimate",
        ) from None
    result = target_job(run.path, settings, budget=budget)
    t = result.metrics["targeting"]
    units = (
        "households"
        if settings.method != "geographic"
        else ("cells" if settings.unit == "cell" else "admin-2 areas")
    )
    _say(
        f"plan: {run.path / 'targeting.csv'} ({t['units_selected']:,} {units} selected, "
        f"budget {t.get('budget')}, spent {t.get('spent', 0):,.0f} {t.get('measure', '')})"
    )
    truth = result.metrics.get("truth", {}).get("targeting")
    if truth:
        m = truth["methods"]["this plan"]
        best = truth["methods"].get("oracle: true cell headcounts", {})
        _say(
            f"poor covered {m['poor_covered']:.1%}, exclusion error {m['exclusion_error']:.1%}"
            + (f" (true-headcount map: {best['exclusion_error']:.1%})" if best else "")
            + f", inclusion error {m['inclusion_error']:.1%}"
        )


@app.command()
@_user_errors
def serve(
    run_dirs: Annotated[
        list[Path] | None, typer.Argument(help="Run directories; one map each.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="A registered model to serve and follow, NAME@ALIAS (e.g. demo@champion): "
            "its map swaps in when the alias moves (extra `mlops`). Repeatable."
        ),
    ] = None,
    runs: Annotated[
        Path,
        typer.Option(
            "--runs",
            help="Runs folder holding the registered runs and, by default, the store "
            "(mlflow.db; POVERTYMAP_TRACKING_URI overrides).",
        ),
    ] = Path("runs"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (when no proxy terminates TLS).")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key.")] = None,
    forwarded_allow_ips: Annotated[
        str | None, typer.Option(help="Proxy addresses whose X-Forwarded-* headers to trust.")
    ] = None,
) -> None:
    """Serve maps, estimates and targeting scenarios as a REST API (extra `serve`).

    Settings come from POVERTYMAP_* variables (docs/service.md); keys from `povertymap keys`.

    Example: povertymap serve runs/demo-20261130T120000Z-1a2b3c --port 8000
    Example: povertymap serve --model demo@champion --runs runs
    """
    from povertymap._options import require

    require("fastapi")
    from povertymap.serve.commands import model_refs
    from povertymap.serve.commands import serve as run_service

    if not run_dirs and not model:
        raise typer.BadParameter("give run directories or --model NAME@ALIAS")
    models = model_refs(model, runs) if model else []
    run_service(
        run_dirs or [],
        models=models,
        host=host,
        port=port,
        workers=workers,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        forwarded_allow_ips=forwarded_allow_ips,
    )


keys_app = typer.Typer(
    help="Create, revoke and list the service's API keys (stored as salted hashes).\n\n"
    "Example: povertymap keys create --role analyst --name ngo-team",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
DatabaseOption = Annotated[
    str | None, typer.Option(help="Database URL (default: POVERTYMAP_DATABASE_URL).")
]


@keys_app.command("create")
@_user_errors
def keys_create(
    role: Annotated[str, typer.Option(help="public, analyst or admin.")],
    name: Annotated[str, typer.Option(help="Who the key is for.")] = "",
    days: Annotated[int | None, typer.Option(min=1, help="Days until it expires.")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a key and print it once (only its salted hash is stored).

    Example: povertymap keys create --role analyst --name ngo-team
    """
    if role not in ("public", "analyst", "admin"):
        from povertymap.errors import ConfigError

        raise ConfigError(f"--role {role!r} is not a role", fix="use public, analyst or admin")
    from povertymap.serve.commands import create_key

    record, key = create_key(role, name=name, days=days, database_url=database_url)
    _say(f"key id {record.key_id} ({record.role.value}, expires {record.expires})")
    console.print(key, soft_wrap=True, highlight=False, markup=False)


@keys_app.command("revoke")
@_user_errors
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id (from `keys list`).")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key; the service refuses it within POVERTYMAP_KEY_CACHE_SECONDS.

    Example: povertymap keys revoke 3f9a1c2b7d4e
    """
    from povertymap.errors import InputError
    from povertymap.serve.commands import revoke_key

    if not revoke_key(key_id, database_url=database_url):
        raise InputError(f"no active key {key_id!r}", fix="see `povertymap keys list`")
    _say(f"revoked {key_id}")


@keys_app.command("list")
@_user_errors
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys: id, name, role, created, expires, revoked (never the keys).

    Example: povertymap keys list
    """
    from povertymap.serve.commands import list_keys

    table = Table(title="API keys")
    for col in ("key id", "name", "role", "created", "expires", "revoked"):
        table.add_column(col)
    for k in list_keys(database_url=database_url):
        table.add_row(k.key_id, k.name, k.role.value, k.created, k.expires, k.revoked or "")
    console.print(table)


audit_app = typer.Typer(
    help="The service's audit trail.\n\nExample: povertymap audit verify", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@_user_errors
def audit_verify(database_url: DatabaseOption = None) -> None:
    """Recompute the audit chain; exit 1 when a row was edited or deleted.

    Example: povertymap audit verify
    """
    from povertymap.serve.commands import verify_audit

    result = verify_audit(database_url=database_url)
    if result.ok:
        _say(f"audit trail intact: {result.rows} rows")
        return
    for problem in result.problems:
        err_console.print(f"[bold red]tampered:[/] {escape(problem)}", soft_wrap=True)
    raise typer.Exit(1)


# -- the model lifecycle (extra `mlops`): thin calls into povertymap.mlops -----------------
models_app = typer.Typer(
    help="The model registry (MLflow): register run directories, list, promote, roll back.\n\n"
    "Example: povertymap models register runs/demo-20261130T120000Z-1a2b3c --name demo",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
StoreOption = Annotated[
    Path,
    typer.Option(
        "--runs",
        help="Runs folder whose mlflow.db is the store (POVERTYMAP_TRACKING_URI or "
        "MLFLOW_TRACKING_URI override).",
    ),
]


def _store(runs: Path) -> str:
    from povertymap.mlops.tracking import tracking_uri

    return tracking_uri(runs)


@models_app.command("register")
@_user_errors
def models_register(
    run_dir: Annotated[Path, typer.Argument(help="A run directory made by `run`.")],
    name: Annotated[str, typer.Option(help="Registered model name.")],
    runs: StoreOption = RUNS_DIR,
) -> None:
    """Register the run's model as a new version (with its model card and input digests).

    Example: povertymap models register runs/demo-20261130T120000Z-1a2b3c --name demo
    """
    from povertymap.mlops.registry import register

    v = register(run_dir, name, uri=_store(runs))
    _say(f"registered {v.name} version {v.version} (run {v.run_id}, CV r2 {v.cv_r2})")


@models_app.command("list")
@_user_errors
def models_list(runs: StoreOption = RUNS_DIR) -> None:
    """List registered models: version, aliases, run, CV r2.

    Example: povertymap models list
    """
    from povertymap.mlops.registry import list_models

    table = Table(title="registered models")
    for col in ("model", "version", "aliases", "run", "CV r2"):
        table.add_column(col)
    for v in list_models(uri=_store(runs)):
        r2 = "" if v.cv_r2 is None else f"{v.cv_r2:.3f}"
        table.add_row(v.name, v.version, ", ".join(v.aliases), v.run_id, r2)
    console.print(table)


@models_app.command("promote")
@_user_errors
def models_promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to promote.")],
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    runs: StoreOption = RUNS_DIR,
) -> None:
    """Give the alias (champion) to VERSION; the previous holder can be rolled back to.

    Example: povertymap models promote demo 2 --alias champion
    """
    from povertymap.mlops.registry import promote

    v = promote(name, version, alias=alias, uri=_store(runs))
    _say(f"{v.name}@{alias} is now version {v.version} (run {v.run_id})")


@models_app.command("rollback")
@_user_errors
def models_rollback(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "champion",
    runs: StoreOption = RUNS_DIR,
) -> None:
    """Give the alias back to the version that held it before.

    Example: povertymap models rollback demo
    """
    from povertymap.mlops.registry import rollback

    v = rollback(name, alias=alias, uri=_store(runs))
    _say(f"{v.name}@{alias} rolled back to version {v.version} (run {v.run_id})")


@app.command()
@_user_errors
def dvc(
    config: Annotated[Path, typer.Argument(help="Study-area YAML; the files go beside it.")],
    truth: Annotated[
        Path | None,
        typer.Option(help="A synthetic country's truth/ folder, to score the map."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing dvc.yaml and params.yaml.")
    ] = False,
) -> None:
    """Write the study's DVC pipeline: dvc.yaml (stages validate, features, train,
    estimate, target, report) and params.yaml beside the config; then `dvc repro`.

    Example: povertymap dvc data/demo/study.yaml && cd data/demo && dvc repro
    """
    from povertymap.mlops.dvcpipe import write_pipeline

    pipeline = write_pipeline(config, truth=truth, force=force)
    _say(f"wrote {pipeline.dvc_yaml} ({', '.join(pipeline.stages)}) and {pipeline.params_yaml}")


@app.command()
@_user_errors
def monitor(
    run_dir: Annotated[
        str,
        typer.Argument(
            help="The run whose model is monitored: a run directory, or a registered model "
            "NAME@ALIAS (e.g. demo@champion) whose run is in --runs."
        ),
    ],
    config: Annotated[Path, typer.Argument(help="Study YAML of the new inputs.")],
    out: Annotated[Path, typer.Option(help="Folder for drift.json and drift.md (new).")],
    runs: StoreOption = RUNS_DIR,
    feedback: Annotated[
        str | None,
        typer.Option(
            help="The service's database URL: score the field feedback posted on this "
            "run's map (POST /v1/feedback) too (extra `serve`)."
        ),
    ] = None,
) -> None:
    """Drift of new inputs against the model's training data: PSI and KS per feature,
    embeddings, predictions and, with labels or field feedback, the error on them.

    Example: povertymap monitor runs/demo-20261130T120000Z-1a2b3c round2/study.yaml --out drift
    Example: povertymap monitor demo@champion round2/study.yaml --runs runs --out drift
    """
    from povertymap.io.configfile import read_config
    from povertymap.mlops.drift import monitor as monitor_job
    from povertymap.rundir import open_run

    run_path = Path(run_dir)
    if "@" in run_dir and not run_path.exists():
        from povertymap.mlops.registry import served_run

        run_path = served_run(run_dir, uri=_store(runs), runs=runs)[1]
    observed = None
    if feedback:
        from povertymap._options import require

        require("sqlalchemy")
        from povertymap.serve.store import feedback_frame

        run = open_run(run_path)
        observed = feedback_frame(feedback, str(run.config_data().get("name") or run.run_id))
    report = monitor_job(run_path, read_config(config), out=out, feedback=observed)
    s = report.summary
    fb = report.labels.get("feedback", {})
    _say(
        f"{'DRIFT' if report.drift else 'no drift'}: {s['drifted']} of {s['n_features']} "
        f"features drifted, largest PSI {s['max_psi']:.3f}, prediction PSI "
        f"{report.prediction['psi']:.3f}"
        + (f", label rmse {report.labels['rmse']:.3f}" if "rmse" in report.labels else "")
        + (f", feedback rmse {fb['rmse']:.3f} (n {fb['n_values']})" if "rmse" in fb else "")
    )
    _say(f"wrote {out / 'drift.json'}")


@app.command()
@_user_errors
def retrain(
    name: Annotated[str, typer.Argument(help="Registered model whose champion is challenged.")],
    config: Annotated[Path, typer.Argument(help="Study YAML of the new round.")],
    runs: StoreOption = RUNS_DIR,
    truth: Annotated[
        Path | None, typer.Option(help="The new round's truth/ folder (synthetic countries).")
    ] = None,
    feedback: Annotated[
        str | None,
        typer.Option(
            help="The service's database URL: compare both maps on the field feedback "
            "posted on the map (extra `serve`)."
        ),
    ] = None,
) -> None:
    """Train a challenger on the new round, compare it with the champion on the same
    spatial folds, and promote it only if it is better and passes the checks.

    Example: povertymap retrain demo round2/study.yaml
    """
    from povertymap.io.configfile import read_config
    from povertymap.mlops.retrain import retrain as retrain_job

    cfg = read_config(config)
    observed = None
    if feedback:
        from povertymap._options import require

        require("sqlalchemy")
        from povertymap.serve.store import feedback_frame

        observed = feedback_frame(feedback, cfg.name)
    with _progress() as progress:
        decision = retrain_job(
            name,
            cfg,
            runs=runs,
            uri=_store(runs),
            truth=truth,
            feedback=observed,
            progress=progress,
        )
    _say(
        f"{'promoted' if decision.promoted else 'refused'}: challenger r2 "
        f"{decision.challenger['r2']:.3f} vs champion {decision.champion['r2']:.3f} on the "
        f"same {decision.folds} folds of the new round"
    )
    for reason in decision.reasons:
        _say(f"- {reason}")


def main() -> None:
    """Entry point of the ``povertymap`` script."""
    app()
