"""The ``gradcam`` command: parsing, wiring and exit codes only, one module per command.

TensorFlow is imported inside the commands, never at module level, so ``gradcam --help`` is quick.
Exit codes: 0 all good; 1 some inputs failed (listed at the end); 2 usage or model error;
3 the output could not be written; 4 an internal error (a bug); 5 a 'gradcam evaluate
--fail-under' threshold was missed; 130 interrupted (Ctrl-C).

A new command is a module here holding one ``click.command`` and a line in :data:`COMMANDS`; the
options several commands share are declared once in :mod:`.common`."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import command_line_names
from . import compare, concepts, evaluate, explain, info, report, similar
from .common import INTERRUPTED

COMMANDS = (explain.explain, similar.similar, evaluate.evaluate, compare.compare, concepts.concepts, report.report,
            info.layers, info.methods, info.models)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gradcam")
def cli() -> None:
    """Show where a Keras image classifier looks: CAM, Grad-CAM, Grad-CAM++ and fifteen more class
    activation methods, for one image or whole folders.

    \b
    Examples:
      gradcam explain sample_images/shapes --model demo
      gradcam explain img.jpg --model xception --method gradcam++
      gradcam explain photos/ --model resnet50 --top-k 3 -o out/
    """
    click.get_current_context().with_resource(command_line_names())  # messages name flags, not keywords


for command in COMMANDS:
    cli.add_command(command)

INTERNAL_ERROR = 4


def main() -> None:
    """The console script. Known errors exit from inside the commands; an unexpected exception is
    a bug, so its traceback is shown for the report, and it exits 4 rather than 1 (which means
    "some inputs failed"). Ctrl-C exits 130 wherever it lands (model load, compile, compute, write):
    Click's own handler, which would print ``Aborted!`` and exit 1, is bypassed (standalone mode off)."""
    try:
        code = cli(prog_name="gradcam", standalone_mode=False)
        if isinstance(code, int):  # --help and --version return their exit code in this mode
            sys.exit(code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("gradcam: interrupted.", err=True)
        sys.exit(INTERRUPTED)
    except click.exceptions.Exit as done:  # --help, --version
        sys.exit(done.exit_code)
    except click.ClickException as usage:  # a bad option or argument: Click's own message, exit 2
        usage.show()
        sys.exit(usage.exit_code)
    except ImportError as error:
        _refuse_backend()  # e.g. KERAS_BACKEND=torch without torch: Keras fails at its own import
        _internal_error(error)
    except Exception as error:  # noqa: BLE001 (the last line of defence)
        _internal_error(error)


def _refuse_backend() -> None:
    """One line and exit 2 where Keras is set to a backend the tool does not compute on."""
    from ..backend import check_supported, configured_name
    from ..errors import GradcamError

    try:
        check_supported(configured_name())
    except GradcamError as refused:
        click.echo(f"gradcam: error: {refused}", err=True)
        sys.exit(refused.exit_code)


def _internal_error(error: BaseException) -> None:
    """An unexpected exception is a bug: its traceback for the report, and exit code 4."""
    import traceback

    traceback.print_exc()
    click.echo(f"gradcam: internal error ({type(error).__name__}: {error}); this is a bug, please report "
               "it with the command and the traceback above.", err=True)
    sys.exit(INTERNAL_ERROR)
