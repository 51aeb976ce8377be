"""The one TModelError hierarchy; every class carries a stable `code` that SPEC.md §10 lists.

Rules: codes never change once released; a reader raises nothing but these for any file content;
`phase` says where a conformance runner groups the failure (container, manifest, data, model, usage, io;
`source` for a malformed file given to `tmodel convert`, which is no tmodel file).

Errors fit Python too: `NotFound` is also a `KeyError`, `InvalidArgument` a `ValueError`, `UnsupportedType`
a `TypeError`, and `MissingFile` (a `FileAccessError`, code IO_ERROR) a `FileNotFoundError`. Their `str` is
the plain message all the same (not KeyError's quoted form).

Every error carries what it is about as attributes, None where not applicable or not known: `path` (the
file), `tensor` (a tensor name), `blob` and `chunk` (indices), `layer` (a layer type name), `version` (a
layer version), `step` (a migration step's name). They are keyword-only arguments of every class and are
filled in where the code knows them: the reader names its file in every error raised while opening or
reading it (`add_context`, which never overwrites what a raise site set). They survive pickling.
"""

from __future__ import annotations

import errno
import os
from typing import Any

#: the attributes an error may carry about its subject, in the order `context` lists them
CONTEXT_FIELDS = ("path", "tensor", "blob", "chunk", "layer", "version", "step")


class TModelError(Exception):
    """Base of every error tmodel raises on purpose."""

    code = "TMODEL"
    phase = "usage"

    path: str | None
    tensor: str | None
    blob: int | None
    chunk: int | None
    layer: str | None
    version: int | None
    step: str | None

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        tensor: str | None = None,
        blob: int | None = None,
        chunk: int | None = None,
        layer: str | None = None,
        version: int | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.tensor = tensor
        self.blob = blob
        self.chunk = chunk
        self.layer = layer
        self.version = version
        self.step = step

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The CLI form: `error[CODE]: message` on one line."""
        return f"error[{self.code}]: " + " ".join(self.message.split())

    @property
    def context(self) -> dict[str, Any]:
        """The attributes that are set (not None), by name."""
        return {k: v for k in CONTEXT_FIELDS if (v := getattr(self, k)) is not None}

    def add_context(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        tensor: str | None = None,
        blob: int | None = None,
        chunk: int | None = None,
        layer: str | None = None,
        version: int | None = None,
        step: str | None = None,
    ) -> TModelError:
        """Fill in attributes that are still None (what the raise site set wins); returns the error, so a
        choke point can `raise exc.add_context(path=...)` or add context and re-raise."""
        given = {
            "path": None if path is None else os.fspath(path),
            "tensor": tensor,
            "blob": blob,
            "chunk": chunk,
            "layer": layer,
            "version": version,
            "step": step,
        }
        for key, value in given.items():
            if value is not None and getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's (and OSError's) reduce would call cls(*args) and lose the keyword-only context
        # (or, for OSError, pass errno and strerror as the message); rebuild through the constructor instead.
        state = {k: v for k, v in self.__dict__.items() if k != "message" and k not in CONTEXT_FIELDS}
        return _rebuild, (type(self), self.message, self.context), state


def _rebuild(cls: type[TModelError], message: str, context: dict[str, Any]) -> TModelError:
    """Unpickling: the same class, message and context (module-level so pickle can name it)."""
    return cls(message, **context)


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


class BadSignature(TModelError):
    """A signature block that is malformed, or a signature that does not verify: always fatal."""

    code, phase = "BAD_SIGNATURE", "data"


class SignatureRequired(TModelError):
    """A caller required a signature by a trusted key and the file has none."""

    code, phase = "SIGNATURE_REQUIRED", "usage"


class BadValue(TModelError):
    code, phase = "BAD_VALUE", "data"


class WrongKey(TModelError):
    """The key or passphrase given does not open this encrypted file (its key check differs)."""

    code, phase = "WRONG_KEY", "data"


class DecryptionFailed(TModelError):
    """An encrypted manifest or chunk fails authentication: changed, reordered, or moved from elsewhere."""

    code, phase = "DECRYPTION_FAILED", "data"


class KeyRequired(TModelError):
    """The file is encrypted and the caller gave no key."""

    code, phase = "KEY_REQUIRED", "usage"


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
class UnsupportedType(TModelError, TypeError):
    code, phase = "UNSUPPORTED_TYPE", "usage"


class NotFound(TModelError, KeyError):
    """Also a KeyError (so a LookupError), as a missing mapping key is in Python; `str` is the plain
    message, not KeyError's quoted repr."""

    code, phase = "NOT_FOUND", "usage"


class InvalidArgument(TModelError, ValueError):
    code, phase = "INVALID_ARGUMENT", "usage"


class ConformanceFailure(TModelError):
    code, phase = "CONFORMANCE_FAILED", "usage"


class FileAccessError(TModelError):
    code, phase = "IO_ERROR", "io"


class MissingFile(FileAccessError, FileNotFoundError):
    """A file that does not exist (ENOENT): still IO_ERROR, and also a FileNotFoundError, whose `errno`,
    `strerror` and `filename` are set from the error (`filename` is `path`). Other failures to open, read or
    write stay plain FileAccessErrors, which are not OSErrors."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.errno = errno.ENOENT
        self.strerror = os.strerror(errno.ENOENT)
        self.filename = self.path

    def add_context(self, **context: Any) -> TModelError:
        super().add_context(**context)
        self.filename = self.path
        return self


def file_error(exc: OSError, message: str, path: str | os.PathLike[str] | None = None) -> FileAccessError:
    """The IO_ERROR for an OSError: MissingFile when the file does not exist, else FileAccessError."""
    cls = MissingFile if isinstance(exc, FileNotFoundError) else FileAccessError
    return cls(message, path=path)


class NotRegularFile(TModelError):
    code, phase = "NOT_REGULAR_FILE", "io"


# -- source phase: files given to `tmodel convert` in other formats -----------------------------------------
class BadSourceFile(TModelError):
    """A safetensors header, Hugging Face index or torch.save file that is not valid (its JSON, fields or
    pickle); a phase of its own because the file is not a tmodel file, and the problem is the file's, not
    the caller's arguments (usage)."""

    code, phase = "BAD_SOURCE", "source"


#: every class; MissingFile shares its parent's code, every other class has a code of its own
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
    BadSignature,
    WrongKey,
    DecryptionFailed,
    BadValue,
    UnregisteredType,
    BadConfig,
    LayerVersionError,
    StateMismatch,
    MigrationError,
    UnsupportedType,
    NotFound,
    InvalidArgument,
    SignatureRequired,
    KeyRequired,
    ConformanceFailure,
    FileAccessError,
    MissingFile,
    NotRegularFile,
    BadSourceFile,
)
