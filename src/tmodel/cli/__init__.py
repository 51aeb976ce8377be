"""The `tmodel` command line; `main.main` is the entry point."""
