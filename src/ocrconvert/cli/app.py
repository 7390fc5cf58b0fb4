"""The ``ocrconvert`` command: one sub-app per command group, one exception table."""
from __future__ import annotations

import logging
import sys

import typer

try:  # typer >= 0.20 vendors click as typer._click, with its own exception classes
    from typer._click.exceptions import ClickException as _ClickException
    from typer.exceptions import Abort as _Abort, Exit as _Exit
except ImportError:  # older typer: plain click
    from click.exceptions import Abort as _Abort, ClickException as _ClickException, Exit as _Exit

from ..errors import ExitCode, OcrConvertError, from_os_error
from . import convert, inspect, routes, verify, zoo
from .render import emit_json, err, print_error

INTERRUPTED = 130  # the shell's code for SIGINT

app = typer.Typer(
    name="ocrconvert",
    help="Convert OCR models between PaddlePaddle, ONNX, PyTorch and TensorRT, and prove every artifact "
         "matches the ORIGINAL model.\n\nExit codes: 0 ok, 2 usage, 3 unsupported model/ops, "
         "4 missing optional dependency, 5 conversion failed, 6 parity failed, 130 interrupted.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
def _print_version(value: bool) -> None:
    if value:
        from .. import __version__
        from .render import out

        out.print(f"ocrconvert {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Convert OCR models between PaddlePaddle, ONNX, PyTorch and TensorRT, and prove parity."""


for module in (convert, verify, inspect, routes):
    module.register(app)
app.add_typer(zoo.app, name="zoo")
for name in ("batch", "bench", "diff", "gpu", "trt", "vlm", "sets", "ocr", "triton"):
    try:  # command groups added by later modules register themselves when present
        __import__(f"ocrconvert.cli.{name}", fromlist=["register"]).register(app)
    except ModuleNotFoundError:
        pass


def _setup_logging(debug: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_path=False)], force=True)


def main(argv: list[str] | None = None) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*ccache.*")  # paddle's import-time noise
    warnings.filterwarnings("ignore", category=UserWarning, module="onnx2torch")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    as_json = "--json" in args
    _setup_logging(debug)
    try:
        code = app(args=args, standalone_mode=False, prog_name="ocrconvert")
        if code == INTERRUPTED:  # typer turns Ctrl-C inside a command into a quiet return of 130
            raise KeyboardInterrupt
    except _Exit as exc:
        code = exc.exit_code
    except _ClickException as exc:  # bad usage: click's own message (or the help), exit 2
        if as_json:
            emit_json({"error": "UsageError", "message": exc.format_message(), "hint": "See --help.",
                       "exit_code": int(ExitCode.USAGE)})
        else:
            exc.show()
        code = ExitCode.USAGE
    except OcrConvertError as exc:
        if debug:
            err.print_exception()
        print_error(exc, as_json)
        code = exc.exit_code
    except OSError as exc:  # an OS error on a path the user chose is a user error, never a traceback
        if debug:
            err.print_exception()
        wrapped = from_os_error(exc)
        print_error(wrapped, as_json)
        code = wrapped.exit_code
    except (KeyboardInterrupt, _Abort):
        if as_json:
            emit_json({"error": "Interrupted", "message": "interrupted", "hint": "Nothing was committed.",
                       "exit_code": INTERRUPTED})
        else:
            err.print("interrupted; nothing was committed")
        code = INTERRUPTED
    sys.exit(int(code or 0))
