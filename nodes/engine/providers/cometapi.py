"""CometAPI: BFL's own API relayed under /flux/v1, with a CometAPI key.

Contract: CometAPI's documentation of its Flux relay (https://apidoc.cometapi.com, "flux
generate" and "flux query"). The body, the statuses and the result are BFL's, so this is BflProvider with
CometAPI's path, its Bearer key and its poll-by-id endpoint; nothing BFL-shaped is repeated here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from .bfl import BflProvider

API_PREFIX = "/flux/v1"


class CometApiProvider(BflProvider):
    name = "cometapi"
    label = "CometAPI"
    key_env_var = "COMETAPI_KEY"
    key_header, key_prefix = "Authorization", "Bearer "
    default_base_url = "https://api.cometapi.com"
    trusted_domain = "cometapi.com"
    result_domains = ("bfl.ai", "cometapi.com")  # it passes BFL's delivery links through
    endpoint_path = f"{API_PREFIX}/flux-2-flex"

    def polling_url(self, task_id: str, submit_answer: dict[str, Any]) -> str | None:
        """The returned polling_url when it is CometAPI's own, else CometAPI's get_result by id.

        CometAPI sometimes answers {id, status: "Pending"} with no polling_url, and a relayed
        answer could carry BFL's own cluster URL, where a CometAPI key must not go (and would not
        work). Its documented get_result?id= endpoint serves every task it created.
        """
        returned = submit_answer.get("polling_url")
        if isinstance(returned, str) and self.key_scope.allows(returned):
            return returned
        return f"{self.base_url}{API_PREFIX}/get_result?{urlencode({'id': task_id})}"
