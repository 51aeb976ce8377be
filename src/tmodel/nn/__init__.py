"""Modules as data: the layer registry, torch.nn's built-in layers, and module <-> record conversion."""
