"""Resource limits a reader enforces before it allocates; callers may tighten or loosen them."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Defaults are SPEC.md §8; every field is an inclusive maximum."""

    max_manifest_bytes: int = 256 * MiB
    max_tensors: int = 1_000_000
    max_blobs: int = 1_000_000
    max_modules: int = 1_000_000
    #: paths from the object tree to module records, shared records counted once per path.
    max_module_paths: int = 1_000_000
    max_chunks: int = 10_000_000
    max_rank: int = 64
    max_depth: int = 128
    max_name_bytes: int = 1024
    max_chunk_size: int = 256 * MiB
    max_window_size: int = 256 * MiB
    #: decoded bytes may exceed the file's size by at most this factor, plus `decoded_slack` ...
    max_expansion: int = 1024
    #: ... so that small files of zeros still load.
    decoded_slack: int = 64 * MiB
    #: absolute cap on the decoded bytes one file may declare.
    max_total_bytes: int = 1 << 50
    #: bytes rebuilt modules may hold beyond those the file stores (unsaved buffers, expanded views).
    max_unsaved_bytes: int = 1 * GiB
    #: names a file may make integrations register on first use (each may import a library module).
    max_found_names: int = 64
    #: bytes scrypt may spend (128 * N * r * p) deriving an encrypted file's key from a passphrase.
    max_kdf_bytes: int = 1 * GiB
    #: files a sharded set's index may list (each is opened when a tensor in it is read).
    max_shards: int = 100_000

    def max_decoded_bytes(self, file_size: int) -> int:
        """The most decoded bytes a file of `file_size` bytes may declare."""
        return min(self.max_total_bytes, file_size * self.max_expansion + self.decoded_slack)


DEFAULT_LIMITS = Limits()
