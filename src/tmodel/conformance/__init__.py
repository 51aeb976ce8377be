"""The conformance suite's code: the runner that drives any implementation over PROTOCOL.md, the reference
implementation behind it, the canonical description of a file, and the tools that write the cases and
freeze golden files. The suite's data is the repository's top-level `conformance/` folder (`suite.py`)."""
