"""Exceptions raised for the library's status codes."""


class Error(Exception):
    """A failed libvqjepa call.

    ``status`` is the library's status code (``vqj_status``), ``status_name``
    its name ("invalid argument", ...) and ``message`` the library's one-line
    message saying what was wrong and where (``str(e)`` is the message).
    """

    status = 0

    def __init__(self, status, message):
        self.status = int(status)
        self.message = message
        super().__init__(message)

    @property
    def status_name(self):
        return _STATUS_NAMES.get(self.status, "unknown status")


class InvalidArgumentError(Error, ValueError):
    """VQJ_ERR_INVALID_ARGUMENT: a bad size, an out-of-range value, an unknown name."""


class OutOfMemoryError(Error, MemoryError):
    """VQJ_ERR_OUT_OF_MEMORY."""


class UnsupportedError(Error):
    """VQJ_ERR_UNSUPPORTED: this build or device cannot do it."""


class FileError(Error, OSError):
    """VQJ_ERR_IO: a file could not be read or written."""

    def __init__(self, status, message):
        Error.__init__(self, status, message)

    def __str__(self):
        return self.message


class ParseError(Error):
    """VQJ_ERR_PARSE: malformed JSON, YAML or checkpoint contents."""


class NumericError(Error, ArithmeticError):
    """VQJ_ERR_NUMERIC: a NaN or infinity where a finite value is needed."""


class DeviceError(Error):
    """VQJ_ERR_DEVICE: BLAS or the GPU runtime failed."""


class StateError(Error):
    """VQJ_ERR_STATE: the call is not valid now (also: using a closed object)."""


class InternalError(Error):
    """VQJ_ERR_INTERNAL: a bug in the library."""


_STATUS_NAMES = {
    1: "invalid argument", 2: "out of memory", 3: "unsupported", 4: "i/o error",
    5: "parse error", 6: "numeric error", 7: "device error", 8: "invalid state",
    9: "internal error",
}

CLASSES = {
    1: InvalidArgumentError, 2: OutOfMemoryError, 3: UnsupportedError, 4: FileError,
    5: ParseError, 6: NumericError, 7: DeviceError, 8: StateError, 9: InternalError,
}


def error_for(status, message):
    """The exception for a status code and message."""
    return CLASSES.get(int(status), Error)(status, message)
