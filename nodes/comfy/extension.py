"""The list of nodes ComfyUI gets from the pack's entry point."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .native_nodes import NATIVE_NODE_CLASSES
from .node_classes import (
    FluxFlexCostEstimate, FluxFlexEdit, FluxFlexGenerate, FluxFlexLocalModel, FluxFlexReferenceBatch,
)
from .recover_node import FluxFlexRecoverTask

NODES: list[type[io.ComfyNode]] = [FluxFlexGenerate, FluxFlexEdit, FluxFlexReferenceBatch, FluxFlexCostEstimate,
                                   FluxFlexLocalModel, *NATIVE_NODE_CLASSES, FluxFlexRecoverTask]


class FluxFlexExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
