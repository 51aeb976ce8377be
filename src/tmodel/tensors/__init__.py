"""The tensor layer (SPEC.md §5.2-§5.4): torch tensors and plain values to and from blobs and tree nodes."""
