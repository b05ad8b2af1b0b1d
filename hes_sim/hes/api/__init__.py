"""The operator HTTP API over ``hes_sim.hes.operations.Operations``, and its server."""

from hes_sim.hes.api.app import ApiSetupError, create_app
from hes_sim.hes.api.server import ApiServer

__all__ = ["ApiServer", "ApiSetupError", "create_app"]
