"""A `torch.distributed.checkpoint` (DCP) storage backend: one tmodel container per rank and a metadata
container, no pickle anywhere (SPEC.md Appendix B). The only package that imports torch.distributed.

>>> dcp.save(state, storage_writer=TModelWriter(path), planner=TModelSavePlanner())
>>> dcp.load(state, storage_reader=TModelReader(path), planner=TModelLoadPlanner())
"""

from __future__ import annotations

from .planners import TModelLoadPlanner, TModelSavePlanner
from .storage import TModelReader, TModelWriter
from .verify import verify_checkpoint

__all__ = ["TModelLoadPlanner", "TModelReader", "TModelSavePlanner", "TModelWriter", "verify_checkpoint"]
