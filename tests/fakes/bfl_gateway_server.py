"""A loopback stand-in for a gateway that relays BFL's API under its own key (DMXAPI, openai-hk,
DeerAPI), shaped by the gateway's profile.

The fake BFL with the gateway's front door: submit at `{prefix}/{model}` and the gateway's own
`{prefix}/get_result?id=` on the API host, with the key in the profile's header (Bearer); results
still come from the BFL-style delivery host on another port. What the submit answer carries is
scripted by `polling_url_mode`: the gateway's own get_result URL ("own"), no polling_url at all
("none", as DMXAPI's and DeerAPI's pages show), or BFL's own cluster URL passed through
("foreign", as openai-hk's examples show): the cluster is another host, where a gateway's key
must never arrive (`cluster_requests` shows whether one did).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Literal

from comfyui_flux2_flex.nodes.engine.providers.gateway_profiles import BFL_FAMILY, BUILT_IN_PROFILES, GatewayProfile

from .bfl_server import FakeBfl, TaskPlan
from .loopback import Request, Response
from .stand_ins import StandIn, register

PollingUrlMode = Literal["own", "none", "foreign"]
# What each built-in gateway's documentation shows in its submit answer.
DOCUMENTED_MODES: dict[str, PollingUrlMode] = {"cometapi": "own", "dmxapi": "none", "openai-hk": "foreign",
                                               "deerapi": "none"}


class FakeBflGateway(FakeBfl):
    """Start with `with FakeBflGateway(profile) as gateway:`; point the client at `gateway.api_url`."""

    def __init__(self, profile: GatewayProfile, api_key: str = "sk-relay-test-0123456789",
                 polling_url_mode: PollingUrlMode | None = None) -> None:
        super().__init__(api_key=api_key)
        self.profile = profile
        self.polling_url_mode = polling_url_mode or DOCUMENTED_MODES.get(profile.name, "own")
        self.api.handler = self._handle_gateway

    def _authorised(self, request: Request) -> bool:
        scheme = f"{self.profile.auth_scheme} " if self.profile.auth_scheme else ""
        return request.headers.get(self.profile.auth_header.lower()) == scheme + self.api_key

    @property
    def cluster_requests(self) -> list[Request]:
        return self.cluster.requests

    @property
    def polls(self) -> list[Request]:
        """Polls of the gateway's own get_result route."""
        return [r for r in self.api.requests if r.path == f"{self.profile.prefix}/get_result"]

    def _handle_gateway(self, request: Request) -> Response:
        submit, poll = f"{self.profile.prefix}/{self.profile.model}", f"{self.profile.prefix}/get_result"
        if request.path not in (submit, poll):
            return Response.json({"error": {"message": "Invalid URL", "type": "invalid_request_error"}}, 404)
        if not self._authorised(request):
            return Response.json({"error": {"message": "Invalid token", "type": "new_api_error"}}, 401)
        if request.path == poll:
            return self._handle_poll(replace(request, path="/v1/get_result"))
        answer = self._handle_api(replace(request, path="/v1/flux-2-flex"))
        if answer.status != 200:
            return answer
        return Response.json(self._relay(json.loads(answer.body)))

    def _relay(self, bfl_answer: dict) -> dict:
        """The gateway's submit answer, in the variant this fake was asked to give."""
        task_id = bfl_answer["id"]
        if self.polling_url_mode == "none":  # CometAPI's and DMXAPI's bare answer
            return {"id": task_id, "status": "Pending"}
        if self.polling_url_mode == "foreign":  # BFL's cluster, another host: no gateway key may go there
            return {**bfl_answer, "polling_url": bfl_answer["polling_url"].replace("127.0.0.1", "localhost")}
        return {**bfl_answer, "polling_url": f"{self.api.url}{self.profile.prefix}/get_result?id={task_id}"}


register(*(
    StandIn(
        provider=name, start=lambda profile=profile: FakeBflGateway(profile), plan=TaskPlan,
        failed=lambda reason: TaskPlan(statuses=["Pending", "Error"], details={"error": reason}),
        moderated=lambda: TaskPlan(statuses=["Content Moderated"], details={"Moderation Reasons": ["NSFW"]}),
        running=lambda: TaskPlan(statuses=["Pending"]),
    )
    for name, profile in BUILT_IN_PROFILES.items() if profile.family == BFL_FAMILY
))
