"""Where explain jobs run.

The local engine is :func:`gradcam_cli.runners.local.run_explain` (thread pools around one compiled
model in this process); :mod:`gradcam_cli.runners.ray` runs the same job on a Ray cluster through
Ray Data. Both call the one batch function, :meth:`gradcam_cli.runners.batch.BatchJob.explain_batch`, and
both write the manifest from the driver through :class:`gradcam_cli.manifest.Manifest`, so their
outputs are the same file for file.
"""
