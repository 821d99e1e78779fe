"""``gradcam report``: the HTML gallery of an earlier run."""

from __future__ import annotations

import click

from ..errors import GradcamError
from .common import fail


@click.command()
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False))
def report(output_dir):
    """Write OUTPUT_DIR/index.html for an earlier 'gradcam explain' run (from its manifest)."""
    from ..report import write_report

    try:
        page = write_report(output_dir)
    except GradcamError as error:
        fail(error)
    click.echo(f"gradcam: report written to {page}", err=True)
