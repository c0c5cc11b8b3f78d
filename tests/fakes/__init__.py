"""Loopback stand-ins for the providers' APIs, used by the tests and the benchmark.

Importing the package imports every stand-in, so each has registered itself in
`stand_ins.STAND_INS` before a test asks for one.
"""

from . import apiframe_server, bfl_server, cometapi_server, fal_server, replicate_server  # noqa: F401
