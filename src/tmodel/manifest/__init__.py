"""The manifest layer (SPEC.md §4, §5): its encoding, its schema, the dtype table, names, metadata, and
the checks a decoded manifest must pass before anything in it is trusted. Torch-free."""
