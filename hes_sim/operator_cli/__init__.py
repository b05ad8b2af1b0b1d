"""``hes-sim meter …`` and ``hes-sim command …``: the operator CLI over the operator API.

A thin client: the API validates and answers, this package finds the API (``--api`` or
``HES_API_URL``), sends the token (``--token-file`` or ``HES_API_TOKEN``) and prints the
answer as aligned text, or as the API's own JSON with ``--json``. ``parsers`` reads the
command line, ``client`` talks HTTP, ``actions`` does each command and ``render`` prints.

Exit codes: 0 done, 1 not found (or, with ``--wait``, the command ended failed or
expired), 2 a usage error, an API that cannot be reached, a refused token or a refused
request; 130 interrupted. Errors are one line on stderr.
"""

from hes_sim.operator_cli.actions import run_operator
from hes_sim.operator_cli.parsers import OPERATOR_COMMANDS, add_operator_parsers

__all__ = ["OPERATOR_COMMANDS", "add_operator_parsers", "run_operator"]
