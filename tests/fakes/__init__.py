"""Loopback stand-ins for the providers' APIs, used by the tests and the benchmark.

Importing the package imports every stand-in, so each has registered itself in
`stand_ins.STAND_INS` before a test asks for one.
"""

from . import (  # noqa: F401
    apiframe_server, azure_foundry_server, bfl_gateway_server, bfl_server, cometapi_server, fal_server,
    openai_gateway_server, openrouter_server, replicate_server,
)
