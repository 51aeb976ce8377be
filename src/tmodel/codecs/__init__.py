"""The codec layer (SPEC.md §6): how a chunk's decoded bytes become stored segments and back. Torch-free."""
