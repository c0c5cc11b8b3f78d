"""A loopback stand-in for CometAPI's Flux relay (https://apidoc.cometapi.com).

CometAPI passes BFL's API through under /flux/v1 with its own Bearer key, so this is the fake BFL
with CometAPI's front door: submit and get_result?id= on the API host, results still served by
the BFL-style delivery host on another port. What the submit answer carries is scripted by
`polling_url_mode`, because CometAPI answers with a polling_url, without one, or (relayed) with
BFL's own cluster URL.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Literal

from .bfl_server import FakeBfl, TaskPlan
from .loopback import Request, Response
from .stand_ins import StandIn, register

PollingUrlMode = Literal["own", "none", "foreign"]


class FakeCometApi(FakeBfl):
    """Start with `with FakeCometApi() as comet:`; point the client at `comet.api_url`."""

    def __init__(self, api_key: str = "comet-test-key-0123456789", polling_url_mode: PollingUrlMode = "own") -> None:
        super().__init__(api_key=api_key)
        self.polling_url_mode = polling_url_mode
        self.api.handler = self._handle_comet

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    @property
    def polls(self) -> list[Request]:
        return [r for r in self.api.requests if r.path == "/flux/v1/get_result"]

    def _handle_comet(self, request: Request) -> Response:
        if request.path not in ("/flux/v1/flux-2-flex", "/flux/v1/get_result"):
            return Response.json({"error": {"message": "Invalid URL", "type": "invalid_request_error"}}, 404)
        if not self._authorised(request):
            return Response.json({"error": {"message": "Invalid token", "type": "comet_api_error"}}, 401)
        if request.path == "/flux/v1/get_result":
            return self._handle_poll(replace(request, path="/v1/get_result"))
        answer = self._handle_api(replace(request, path="/v1/flux-2-flex"))
        if answer.status != 200:
            return answer
        return Response.json(self._relay(json.loads(answer.body)))

    def _relay(self, bfl_answer: dict) -> dict:
        """CometAPI's submit answer, in the variant this fake was asked to give."""
        task_id = bfl_answer["id"]
        if self.polling_url_mode == "none":
            return {"id": task_id, "status": "Pending"}
        if self.polling_url_mode == "foreign":  # BFL's cluster, not CometAPI: no CometAPI key may go there
            return {"id": task_id, "polling_url": bfl_answer["polling_url"].replace("127.0.0.1", "localhost")}
        return {"id": task_id, "polling_url": f"{self.api.url}/flux/v1/get_result?id={task_id}"}


register(StandIn(
    provider="cometapi", start=FakeCometApi, plan=TaskPlan,
    failed=lambda reason: TaskPlan(statuses=["Pending", "Error"], details={"error": reason}),
    moderated=lambda: TaskPlan(statuses=["Content Moderated"], details={"Moderation Reasons": ["NSFW"]}),
    running=lambda: TaskPlan(statuses=["Pending"]),
))
