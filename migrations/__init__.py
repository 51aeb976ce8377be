"""The format's own schema steps, one self-contained file per step."""
