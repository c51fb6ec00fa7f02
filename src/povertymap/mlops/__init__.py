"""The model lifecycle (extra ``mlops``): tracking, registry, model cards, the DVC
pipeline, drift monitoring and gated retraining.

Every module here composes the library's seams (:func:`povertymap.rundir.open_run`,
:class:`povertymap.mapping.MappingModel`, the jobs of :mod:`povertymap.pipeline`) and
nothing below them. MLflow and DVC are imported lazily, inside the functions that need
them (``import povertymap.mlops`` loads neither), and MLflow's telemetry is switched off
before its first import (:func:`povertymap.mlops.tracking.import_mlflow`).

- :mod:`.card`: the model card (Mitchell et al. 2019) of a run, from the run directory.
- :mod:`.tracking`: a run directory logged as an MLflow run, its model as a pyfunc.
- :mod:`.registry`: register, list, promote (alias ``champion``) and roll back versions.
- :mod:`.drift`: PSI/KS per feature, embedding, prediction and label drift (``drift.json``).
- :mod:`.retrain`: a challenger on a new round against the champion, behind a gate.
- :mod:`.dvcpipe`: ``dvc.yaml`` and ``params.yaml`` for a study; :mod:`.stages`: its stages.
"""
