"""What the pack's ComfyUI modules share: the menu category, the custom socket types and the
message the web extension reads from a node after it ran."""

from __future__ import annotations

from comfy_api.latest import io

CATEGORY = "FLUX.2 [flex]"  # the family; node names start with the word that tells them apart
REFERENCES = io.Custom("FLUX2_FLEX_REFERENCES")
LOCAL_MODEL = io.Custom("FLUX2_FLEX_LOCAL_MODEL")
UI_KEY = "flux2_flex"  # the key the web extension reads from a node's "executed" message


def ui_report(report: str) -> dict[str, list]:
    """What the web extension shows on the node after it ran."""
    return {UI_KEY: [{"report": report}]}
