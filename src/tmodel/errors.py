"""The one TModelError hierarchy; every class carries a stable `code` that SPEC.md §10 lists.

Rules: codes never change once released; a reader raises nothing but these for any file content;
`phase` says where a conformance runner groups the failure (container, manifest, data, model, usage, io).
"""

from __future__ import annotations


class TModelError(Exception):
    """Base of every error tmodel raises on purpose."""

    code = "TMODEL"
    phase = "usage"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The CLI form: `error[CODE]: message` on one line."""
        return f"error[{self.code}]: " + " ".join(self.message.split())


# -- container phase: the fixed framing around the manifest and blobs ---------------------------------
class BadMagic(TModelError):
    code, phase = "BAD_MAGIC", "container"


class UnsupportedVersion(TModelError):
    code, phase = "UNSUPPORTED_VERSION", "container"


class UnknownFeature(TModelError):
    code, phase = "UNKNOWN_FEATURE", "container"


class Truncated(TModelError):
    code, phase = "TRUNCATED", "container"


class BadLayout(TModelError):
    code, phase = "BAD_LAYOUT", "container"


class LimitExceeded(TModelError):
    code, phase = "LIMIT_EXCEEDED", "container"


# -- manifest phase: decoding and validating the msgpack manifest ---------------------------------------
class ManifestDecodeError(TModelError):
    code, phase = "MANIFEST_DECODE", "manifest"


class ManifestSchemaError(TModelError):
    code, phase = "MANIFEST_SCHEMA", "manifest"


class BadName(TModelError):
    code, phase = "BAD_NAME", "manifest"


class UnknownDtype(TModelError):
    code, phase = "UNKNOWN_DTYPE", "manifest"


class UnknownCodec(TModelError):
    code, phase = "UNKNOWN_CODEC", "manifest"


class UnknownChecksum(TModelError):
    code, phase = "UNKNOWN_CHECKSUM", "manifest"


class BadTensor(TModelError):
    code, phase = "BAD_TENSOR", "manifest"


# -- data phase: blob bytes ---------------------------------------------------------------------------
class ChecksumMismatch(TModelError):
    code, phase = "CHECKSUM_MISMATCH", "data"


class BadCompressedData(TModelError):
    code, phase = "BAD_COMPRESSED_DATA", "data"


class BadValue(TModelError):
    code, phase = "BAD_VALUE", "data"


# -- model phase: rebuilding modules from records -----------------------------------------------------
class UnregisteredType(TModelError):
    code, phase = "UNREGISTERED_TYPE", "model"


class BadConfig(TModelError):
    code, phase = "BAD_CONFIG", "model"


class LayerVersionError(TModelError):
    code, phase = "LAYER_VERSION", "model"


class StateMismatch(TModelError):
    code, phase = "STATE_MISMATCH", "model"


class MigrationError(TModelError):
    code, phase = "MIGRATION", "model"


# -- usage and io: the caller's side ------------------------------------------------------------------
class UnsupportedType(TModelError):
    code, phase = "UNSUPPORTED_TYPE", "usage"


class NotFound(TModelError):
    code, phase = "NOT_FOUND", "usage"


class InvalidArgument(TModelError):
    code, phase = "INVALID_ARGUMENT", "usage"


class ConformanceFailure(TModelError):
    code, phase = "CONFORMANCE_FAILED", "usage"


class FileAccessError(TModelError):
    code, phase = "IO_ERROR", "io"


class NotRegularFile(TModelError):
    code, phase = "NOT_REGULAR_FILE", "io"


ALL_ERRORS: tuple[type[TModelError], ...] = (
    TModelError,
    BadMagic,
    UnsupportedVersion,
    UnknownFeature,
    Truncated,
    BadLayout,
    LimitExceeded,
    ManifestDecodeError,
    ManifestSchemaError,
    BadName,
    UnknownDtype,
    UnknownCodec,
    UnknownChecksum,
    BadTensor,
    ChecksumMismatch,
    BadCompressedData,
    BadValue,
    UnregisteredType,
    BadConfig,
    LayerVersionError,
    StateMismatch,
    MigrationError,
    UnsupportedType,
    NotFound,
    InvalidArgument,
    ConformanceFailure,
    FileAccessError,
    NotRegularFile,
)
