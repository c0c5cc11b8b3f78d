"""A loopback stand-in for CometAPI's Flux relay (https://apidoc.cometapi.com).

CometAPI passes BFL's API through under /flux/v1 with its own Bearer key: the BFL-compatible
gateway stand-in with CometAPI's profile and its test key. `polling_url_mode` scripts what the
submit answer carries, because CometAPI answers with a polling_url, without one, or (relayed)
with BFL's own cluster URL.
"""

from __future__ import annotations

from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import BUILT_IN_PROFILES

from .bfl_gateway_server import FakeBflGateway, PollingUrlMode


class FakeCometApi(FakeBflGateway):
    """Start with `with FakeCometApi() as comet:`; point the client at `comet.api_url`."""

    def __init__(self, api_key: str = "comet-test-key-0123456789", polling_url_mode: PollingUrlMode = "own") -> None:
        super().__init__(BUILT_IN_PROFILES["cometapi"], api_key=api_key, polling_url_mode=polling_url_mode)
