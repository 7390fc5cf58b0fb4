"""Exception hierarchy and the documented exit codes.

Every user-facing failure is an ``OcrConvertError`` carrying one message, a hint and an exit
code; the CLI renders it without a traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1          # an unexpected exception: a bug
    USAGE = 2             # bad arguments, bad path, bad config
    UNSUPPORTED = 3       # unsupported model, format or operators
    MISSING_DEPENDENCY = 4  # an optional dependency (pip extra) is not installed
    CONVERSION_FAILED = 5  # a converter or runtime failed on a supported model
    PARITY_FAILED = 6     # the converted artifact does not match the source


class OcrConvertError(Exception):
    exit_code: ExitCode = ExitCode.CONVERSION_FAILED
    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": int(self.exit_code),
        }


class UsageError(OcrConvertError):
    exit_code = ExitCode.USAGE


class ModelNotFoundError(UsageError):
    default_hint = "Pass a Paddle model folder, an .onnx file or an ocrconvert artifact."


class UnsupportedModelError(OcrConvertError):
    exit_code = ExitCode.UNSUPPORTED


class UnsupportedOpsError(UnsupportedModelError):
    """All unsupported operators of a model, found in one preflight pass."""

    def __init__(self, ops: list[str], *, target: str, hint: str | None = None):
        self.ops = sorted(set(ops))
        super().__init__(
            f"{len(self.ops)} operator(s) have no {target} converter: {', '.join(self.ops)}",
            hint=hint or "Run `ocrconvert routes` to see other routes, or register a converter plugin.",
        )

    def to_dict(self) -> dict:
        return {**super().to_dict(), "unsupported_ops": self.ops}


class CorruptModelError(UnsupportedModelError):
    default_hint = "The file is truncated or not what its name says; fetch it again."


class MissingDependencyError(OcrConvertError):
    exit_code = ExitCode.MISSING_DEPENDENCY

    def __init__(self, package: str, extra: str | None, *, why: str = ""):
        self.package = package
        self.extra = extra
        install = f"pip install 'ocrconvert[{extra}]'" if extra else f"pip install {package}"
        super().__init__(
            f"{package} is not installed{': ' + why if why else ''}",
            hint=f"Install it with: {install}",
        )


class ConversionError(OcrConvertError):
    exit_code = ExitCode.CONVERSION_FAILED
    default_hint = "Run again with --debug for the full log of the failing tool."


class ParityError(OcrConvertError):
    exit_code = ExitCode.PARITY_FAILED
    default_hint = "See the verification table; loosen tolerances only if you understand why."


def from_os_error(exc: OSError, action: str = "") -> OcrConvertError:
    """An OS error as a user error: disk full is a failed conversion (5); a bad, unwritable or too long
    path is a usage error (2). The message names the path and the system's reason."""
    import errno

    where = exc.filename or ""
    what = f"{action + ' ' if action else ''}{where}".strip() or "an output"
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ConversionError(f"no space left on the device while writing {what}",
                               hint="Free some disk space and run again; nothing was written.")
    if exc.errno == errno.ENAMETOOLONG:
        return UsageError(f"cannot write {what}: the name is too long for the file system",
                          hint="Choose a shorter output name.")
    return UsageError(f"cannot write {what}: {reason}", hint="Choose another -o/--output location.")


def from_os_read_error(exc: OSError, what: str = "") -> OcrConvertError:
    """An OS error met while reading a user's file (a name too long, a link that leads nowhere or loops, no
    permission) as a usage error naming the file and the system's reason; never 'cannot write'."""
    where = what or exc.filename or "an input"
    reason = exc.strerror or type(exc).__name__
    return ModelNotFoundError(f"cannot read {where}: {reason}",
                              hint="Check the path: it must name a readable file or folder.")
