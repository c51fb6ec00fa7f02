"""The Spark engine: the same kernels as the local engine, run as tasks on Spark executors.

``SparkEngine.map(func, items)`` makes one Spark task of each item: the items, pickled
with cloudpickle, become the partitions of an RDD (``sc.parallelize`` with one slice per
item), the kernel ``func`` (often a :func:`functools.partial` that carries a fitted model,
a training table or a raster path) is sent once to every executor as a broadcast variable
rather than once per task, and each task returns its DataFrame pickled. The driver puts
the results back in item order and concatenates them, exactly as
:class:`~povertymap.engine.local.LocalEngine` does.

Why an RDD of pickled DataFrames rather than ``mapInPandas``/``mapInArrow``: the engine
contract is that results are the same *to the bit*, index, dtypes and column order
included, whatever the engine. A pickled pandas DataFrame crosses the JVM unchanged; an
Arrow round trip drops the index, turns object columns into strings and nullable
columns into floats. The work is in the Python kernels, not in Spark SQL, so nothing is
lost by keeping Spark to scheduling, broadcast and transport.

Invariants (those of :mod:`povertymap.engine.base`):

- the result is the concatenation of the items' DataFrames in item order;
- ``progress(label, done, total)`` is called once for every ``done`` in ``1..total``, in
  that order, as tasks complete (the count of finished tasks, whichever they are);
- an exception raised by a kernel is raised again in the driver, the first failing item's
  in item order, with its own type (e.g. a :class:`~povertymap.errors.RasterError`
  naming the file), rather than a Java stack trace.

Inputs a kernel opens (rasters, vectors, embedding stores) are opened *by the executor*:
on a cluster they must be paths every executor can read (a shared filesystem, or an object
store URI that GDAL reads, such as ``/vsis3/...``). With a ``local[N]`` master the
executors are processes of this machine and any path works.

The session is built once per process (``SparkSession.builder.getOrCreate``): app name
``povertymap``, the web UI off, few shuffle partitions (the engine shuffles nothing), log
level WARN, and ``PYSPARK_PYTHON``/``PYSPARK_DRIVER_PYTHON`` set to this interpreter unless
already set, so executors import the same povertymap. The master is, in order: the one
given (``features.spark_master``), ``POVERTYMAP_SPARK_MASTER``, the one ``spark-submit``
was given, ``local[*]``.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from povertymap._options import require
from povertymap.engine.base import ProgressCallback
from povertymap.errors import ConfigError, DependencyError

__all__ = ["DEFAULT_MASTER", "MASTER_ENV", "SparkEngine", "check_spark", "spark_master"]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: The environment variable that names the Spark master when the config does not.
MASTER_ENV = "POVERTYMAP_SPARK_MASTER"
#: The master used when neither the config, the environment nor ``spark-submit`` gives one.
DEFAULT_MASTER = "local[*]"
#: Seconds between two looks at the finished-task count while a job runs.
POLL_S = 0.1

_FIX_PYSPARK = "install the extra: pip install 'povertymap[spark]' (pyspark 4.x)"
_FIX_JAVA = (
    "install Java 17 (e.g. apt-get install openjdk-17-jre-headless) and put it on PATH or "
    "set JAVA_HOME to its folder; or use engine: local"
)


def spark_master(master: str | None = None) -> str | None:
    """The master URL to ask for: ``master``, else ``$POVERTYMAP_SPARK_MASTER``, else None
    under ``spark-submit`` (its ``--master`` applies), else ``local[*]``."""
    if master:
        return master
    env = os.environ.get(MASTER_ENV, "").strip()
    if env:
        return env
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # launched by spark-submit: keep its master
        return None
    return DEFAULT_MASTER


def _java() -> str | None:
    """The java executable Spark will start: ``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        exe = Path(home) / "bin" / "java"
        return str(exe) if exe.exists() else None
    return shutil.which("java")


def check_spark() -> None:
    """Refuse early, with the fix, when the Spark engine cannot start here.

    Raises a :class:`~povertymap.errors.ConfigError` (key ``features.engine``) when pyspark
    is not installed or no Java runtime is found, before any work is done, rather than a
    Py4J error halfway through a run. Under ``spark-submit`` the JVM is already running.
    """
    try:
        require("pyspark")
    except DependencyError as exc:
        raise ConfigError(
            "engine 'spark' needs pyspark, which is not installed",
            where="key features.engine",
            fix=_FIX_PYSPARK,
        ) from exc
    if "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    if _java() is None:
        home = os.environ.get("JAVA_HOME")
        problem = (
            f"engine 'spark' needs Java, and JAVA_HOME={home!r} has no bin/java"
            if home
            else "engine 'spark' needs Java, and no java is on PATH and JAVA_HOME is not set"
        )
        raise ConfigError(problem, where="key features.engine", fix=_FIX_JAVA)


class SparkEngine:
    """Items as Spark tasks, the kernel broadcast once, results back in item order.

    Parameters
    ----------
    master:
        Spark master URL (``local[2]``, ``spark://host:7077``, ``k8s://...``, ``yarn``);
        default: :func:`spark_master`.
    conf:
        Extra Spark settings (``{"spark.executor.memory": "4g"}``) for the session this
        engine builds; ignored when a session already runs in this process.

    The session starts on the first :meth:`map` (or :meth:`session`), not here, so
    building the engine is cheap; pyspark and Java are checked here, so a missing one is a
    :class:`~povertymap.errors.ConfigError` before any work.
    """

    name = "spark"

    def __init__(self, master: str | None = None, conf: dict[str, str] | None = None) -> None:
        check_spark()
        self.master = spark_master(master)
        self.conf = dict(conf or {})
        self._session: Any = None

    def __repr__(self) -> str:
        return f"SparkEngine(master={self.master!r})"

    def session(self) -> Any:
        """The process's SparkSession (built on first use with this engine's settings)."""
        if self._session is None:
            self._session = _build_session(self.master, self.conf)
        return self._session

    @property
    def parallelism(self) -> int:
        """How many tasks the cluster runs at once (Spark's default parallelism)."""
        return int(self.session().sparkContext.defaultParallelism)

    def map(
        self,
        func: Callable[[T], pd.DataFrame],
        items: Sequence[T],
        *,
        label: str = "",
        progress: ProgressCallback | None = None,
    ) -> pd.DataFrame:
        """Apply ``func`` to each item on the executors; concatenate in item order."""
        items = list(items)
        total = len(items)
        if total == 0:
            return pd.DataFrame()
        serializer = require("pyspark.serializers").CloudPickleSerializer()
        sc = self.session().sparkContext
        kernel = sc.broadcast(serializer.dumps(func))
        try:
            blobs = [(i, serializer.dumps(item)) for i, item in enumerate(items)]
            rdd = sc.parallelize(blobs, numSlices=total).mapPartitions(
                partial(_run_partition, kernel)
            )
            rows = _collect(sc, rdd, label, total, progress)
        finally:
            kernel.destroy(blocking=False)
        rows.sort(key=lambda row: row[0])
        if [row[0] for row in rows] != list(range(total)):  # a task lost or doubled
            raise RuntimeError(f"spark returned {len(rows)} results for {total} {label} items")
        for _, ok, payload in rows:
            if not ok:
                raise pickle.loads(payload)
        return pd.concat([pickle.loads(payload) for _, _, payload in rows])


def _build_session(master: str | None, conf: dict[str, str]) -> Any:
    """``getOrCreate`` the povertymap session; a start failure becomes a ConfigError."""
    local = master is not None and master.startswith("local")
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        if local:  # executors on this machine: this interpreter, which has povertymap
            os.environ[name] = sys.executable
        else:  # a cluster's Python may live elsewhere: keep the one the user set
            os.environ.setdefault(name, sys.executable)
    if not local and master is not None and _pandera_loopback():
        # pandera (>= 0.27, its issue #2344) sets SPARK_LOCAL_IP=127.0.0.1 for good when it
        # is imported (io.survey validates with it): a driver bound to loopback is one
        # that a cluster's executors cannot reach
        log.warning("ignoring SPARK_LOCAL_IP=127.0.0.1 set by pandera for master %s", master)
        del os.environ["SPARK_LOCAL_IP"]
    sql = require("pyspark.sql")
    builder = sql.SparkSession.builder.appName("povertymap")
    if master is not None:
        builder = builder.master(master)
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # povertymap reports its own progress
        "spark.sql.shuffle.partitions": "4",  # the engine shuffles nothing
        "spark.python.worker.reuse": "true",  # imports paid once per executor process
    }
    if local:  # one machine: bind to loopback, whatever the host name resolves to
        settings |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    for key, value in {**settings, **conf}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: Java missing, broken, or no memory
        raise ConfigError(
            f"the Spark session (master {master or 'from spark-submit'}) did not start: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            where="key features.engine",
            fix=f"check Java 17 (JAVA_HOME) and the master URL ({MASTER_ENV}); or use "
            "engine: local",
        ) from exc
    session.sparkContext.setLogLevel("WARN")
    return session


def _pandera_loopback() -> bool:
    """Whether ``SPARK_LOCAL_IP`` holds the ``127.0.0.1`` that importing pandera sets.

    pandera cannot be told apart from a user who set the same value; but a driver bound to
    loopback is never reachable by a cluster's executors, so for a cluster master the value
    is dropped either way (a ``spark.driver.host`` in ``conf`` still binds explicitly).
    """
    return os.environ.get("SPARK_LOCAL_IP") == "127.0.0.1" and "pandera" in sys.modules


def _collect(
    sc: Any, rdd: Any, label: str, total: int, progress: ProgressCallback | None
) -> list[tuple[int, bool, bytes]]:
    """``rdd.collect()`` in a thread of its own job group, reporting finished tasks."""
    group = f"povertymap-{uuid.uuid4().hex}"
    out: dict[str, Any] = {}

    def run() -> None:
        sc.setJobGroup(group, label or "povertymap", interruptOnCancel=True)
        try:
            out["rows"] = rdd.collect()
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    thread_class = require("pyspark").InheritableThread
    thread: threading.Thread = thread_class(target=run, daemon=True)
    reported = 0
    thread.start()
    try:
        while thread.is_alive():
            thread.join(POLL_S)
            if progress is not None:
                done = min(_finished_tasks(sc, group), total)
                for k in range(reported + 1, done + 1):
                    progress(label, k, total)
                reported = max(reported, done)
    except BaseException:  # Ctrl-C in the driver: stop the executors' work too
        sc.cancelJobGroup(group)
        raise
    if "error" in out:
        error = out["error"]
        if "No module named 'povertymap'" in str(error):
            raise ConfigError(
                "the Spark executors cannot import povertymap",
                where="key features.engine",
                fix="install povertymap (the same version) in the executors' Python, or set "
                "PYSPARK_PYTHON to a Python that has it",
            ) from error
        raise error
    if progress is not None:
        for k in range(reported + 1, total + 1):
            progress(label, k, total)
    rows: list[tuple[int, bool, bytes]] = out["rows"]
    return rows


def _finished_tasks(sc: Any, group: str) -> int:
    """Tasks finished so far by the jobs of ``group`` (0 before the job is registered)."""
    tracker = sc.statusTracker()
    done = 0
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        for stage_id in job.stageIds if job is not None else ():
            stage = tracker.getStageInfo(stage_id)
            done += stage.numCompletedTasks if stage is not None else 0
    return done


def _run_partition(
    kernel: Any, rows: Iterable[tuple[int, bytes]]
) -> Iterator[tuple[int, bool, bytes]]:
    """On an executor: unpickle the broadcast kernel once, run it on the partition's items.

    Yields ``(position, ok, payload)``: the pickled DataFrame, or the pickled exception
    (so the driver raises the kernel's own error rather than a Java one).
    """
    from pyspark.serializers import CloudPickleSerializer

    serializer = CloudPickleSerializer()
    func = serializer.loads(kernel.value)
    for position, blob in rows:
        try:
            result = func(serializer.loads(blob))
        except Exception as exc:
            exc.add_note("raised on a Spark executor:\n" + traceback.format_exc())
            yield position, False, _pickled_error(exc)
        else:
            yield position, True, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)


def _pickled_error(exc: Exception) -> bytes:
    """``exc`` pickled, or a RuntimeError with its text where it cannot be pickled."""
    try:
        payload = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt
        return payload
    except Exception:
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
