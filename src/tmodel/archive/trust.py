"""Whose signature a caller requires (SPEC.md §3.4): kept apart from `signing`, so that loading a file
nobody asked to be signed imports no cryptography."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import InvalidArgument, SignatureRequired


def require(found: Sequence[Any], trusted_keys: Iterable[Any] | None, required: bool) -> None:
    """SIGNATURE_REQUIRED unless a signature (all of which verified) is by one of `trusted_keys`."""
    if not required:
        return
    if trusted_keys is None:
        raise InvalidArgument("require_signature=True needs trusted_keys: anyone can sign a file")
    from .signing import key_id, public_key

    trusted = {key_id(public_key(k)) for k in trusted_keys}
    if not any(s.key_id in trusted for s in found):
        what = ", ".join(s.key_id[:16] for s in found) or "none"
        raise SignatureRequired(f"no signature by a trusted key (signatures by: {what})")
