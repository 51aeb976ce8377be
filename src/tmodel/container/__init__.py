"""The container layer (SPEC.md §3, §7, §11): the byte framing around blobs and manifest, checksums, and
the file operations a reader and a writer need (exact reads, atomic replacement, early writeback).
Torch-free; it never interprets the manifest."""
