"""Gateways that relay BFL's own API under their own key (DMXAPI, openai-hk, DeerAPI, ...),
driven by a `GatewayProfile`.

Contract common to the family: BFL's flex body (https://docs.bfl.ai/api-reference, Flux2FlexInputs)
posted to `{origin}{prefix}/{model}` with the key in `Authorization: Bearer` instead of BFL's
`x-key`, answered {id, polling_url?, cost?}; the task is then polled at the gateway's own
`GET {origin}{prefix}/get_result?id=<id>`, which answers BFL's {id, status, result: {sample}}.
Sources: DMXAPI https://doc.dmxapi.cn/flux-2-flex.html and https://doc.dmxapi.com/img-flux-chaxun.html,
openai-hk https://oauth.openai-hk.com/docs/en/lab/bfl-flux.html, DeerAPI
https://apidoc.deerapi.com/api/image/flux/query-task.

openai-hk (and others) pass BFL's own `polling_url` (on api.eu2.bfl.ai) through unchanged while
their docs poll their own get_result: a returned polling_url is followed only when it is on the
gateway's own host, so the gateway's key never goes to BFL or anywhere else; every other case
polls get_result by id. The result `sample` is BFL's delivery link, downloaded at once without
the key. The journal, resume and recover work as for BFL, since the task is a BFL-shaped one.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlencode

from .bfl import BflProvider
from .gateway_profiles import GatewayProfile

GET_RESULT = "/get_result"


class BflGateway(BflProvider):
    """BFL's provider with a gateway's origin, prefix, model path and auth header (see `gateway_provider`)."""

    profile: GatewayProfile
    trusted_domain = None  # the key goes to the configured gateway host only, never to *.bfl.ai
    result_domains = ("bfl.ai",)

    def fallback_base_url(self, environ: Mapping[str, str]) -> str:
        return self.profile.origin

    def submit_url(self, request) -> str:
        return f"{self.base_url}{self.profile.prefix}/{self.profile.model}"

    def polling_url(self, task_id: str, submit_answer: dict[str, Any]) -> str | None:
        """The returned polling_url when it is the gateway's own host, else get_result by id."""
        returned = submit_answer.get("polling_url")
        if isinstance(returned, str) and self.key_scope.allows(returned):
            return returned
        return f"{self.base_url}{self.profile.prefix}{GET_RESULT}?{urlencode({'id': task_id})}"
