"""DCP planners that keep non-tensor state (optimizer param_groups, ints, configs) as tmodel values.

DCP's default planners turn every non-tensor item into a `torch.save` pickle (`BYTE_IO`). These hand
the object itself to `TModelWriter` / `TModelReader` (`resolve_value`, `load_value`), which store it as a
value of the shard's object tree; with any other storage their bytes items are `tmodel.save_bytes`
containers, never pickles.
"""

from __future__ import annotations

import io
from typing import Any

from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner, DefaultSavePlanner
from torch.distributed.checkpoint.planner import ReadItem, WriteItem, WriteItemType

from ..api import load_bytes, save_bytes


class TModelSavePlanner(DefaultSavePlanner):
    """DefaultSavePlanner whose bytes items are tmodel values, not pickles."""

    def resolve_value(self, write_item: WriteItem) -> Any:
        """The non-tensor object a BYTE_IO item stands for, as it is in the state dict."""
        return self.lookup_object(write_item.index)

    def transform_object(self, write_item: WriteItem, object: Any) -> Any:
        if write_item.type == WriteItemType.BYTE_IO:
            return io.BytesIO(save_bytes({"value": object}))
        return object


class TModelLoadPlanner(DefaultLoadPlanner):
    """DefaultLoadPlanner that puts stored values back as they are (no `torch.load`)."""

    def load_value(self, read_item: ReadItem, value: Any) -> None:
        """Set the state dict's entry of a BYTE_IO item to the stored value."""
        fqn = read_item.dest_index.fqn
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], value)
        else:
            self.state_dict[fqn] = value

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        self.load_value(read_item, load_bytes(value.getvalue())["value"])
