"""A loopback stand-in for CometAPI's Flux relay (https://apidoc.cometapi.com).

CometAPI passes BFL's API through under /flux/v1 with its own Bearer key: the BFL-compatible
gateway stand-in with CometAPI's front door. What the submit answer carries is scripted by
`polling_url_mode`, because CometAPI answers with a polling_url, without one, or (relayed) with
BFL's own cluster URL.
"""

from __future__ import annotations

from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import BFL_FAMILY, GatewayProfile

from .bfl_gateway_server import FakeBflGateway, PollingUrlMode, bfl_family_stand_in
from .stand_ins import register

COMETAPI = GatewayProfile(name="cometapi", label="CometAPI", family=BFL_FAMILY, origin="https://api.cometapi.com",
                          prefix="/flux/v1", model="flux-2-flex", answer_form="poll")


class FakeCometApi(FakeBflGateway):
    """Start with `with FakeCometApi() as comet:`; point the client at `comet.api_url`."""

    def __init__(self, api_key: str = "comet-test-key-0123456789", polling_url_mode: PollingUrlMode = "own") -> None:
        super().__init__(COMETAPI, api_key=api_key, polling_url_mode=polling_url_mode)


register(bfl_family_stand_in("cometapi", FakeCometApi))
