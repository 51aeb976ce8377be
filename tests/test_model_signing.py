"""OpenSSF model-signing interoperates (issue 16 point 2): a key from `tmodel keygen --algorithm ecdsa-p256`
signs a .tmodel file as a detached Sigstore bundle offline (a private key, no Sigstore network), the bundle
verifies with the public key, and a changed byte is refused; the file's own embedded signature is there
too, independently."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_signing import signing, verifying

import tmodel


def test_a_detached_model_signing_bundle_signs_and_verifies_a_tmodel_file(tmp_path: Path) -> None:
    tmodel.keygen(tmp_path / "key", "ecdsa-p256")
    path = tmp_path / "model.tmodel"
    tmodel.save({"w": torch.randn(256, 64)}, path, sign_with=tmp_path / "key")
    bundle = tmp_path / "model.tmodel.sig"
    signing.Config().use_elliptic_key_signer(private_key=tmp_path / "key").sign(path, bundle)
    verifier = verifying.Config().use_elliptic_key_verifier(public_key=tmp_path / "key.pub")
    verifier.verify(path, bundle)  # raises if it does not verify
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01
    changed = tmp_path / "changed.tmodel"
    changed.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        verifier.verify(changed, bundle)
    assert [s.algorithm for s in tmodel.signatures(path)] == ["ecdsa-p256"]  # and the embedded one
