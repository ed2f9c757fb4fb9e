"""Reach a Ray cluster's Jobs API: normalise its address, check it answers, and send its token when it wants one.

Ray 2.60 token authentication: a cluster started with ``RAY_AUTH_MODE=token`` (the default for a new local
``ray.init()``; ``ray start`` turns it on when a token exists) refuses dashboard requests without the header
``Authorization: Bearer <token>``. It says which mode it runs in on the public endpoint ``/api/authentication_mode``.
The token is looked up where Ray itself looks: ``RAY_AUTH_TOKEN``, then the file named by ``RAY_AUTH_TOKEN_PATH``,
then ``~/.ray/auth_token`` (``ray get-auth-token`` prints it on the head). It is sent only to a cluster that
requires it, and never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import SubmitError
from pipeline.io.fs import redact

DEFAULT_TIMEOUT = 10.0  # seconds: a dead or firewalled address fails fast
def normalize_address(address: str | None) -> str:
    """``http(s)://HOST:PORT`` of the Jobs API; from RAY_API_SERVER_ADDRESS / RAY_ADDRESS when not given."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SubmitError("no cluster address: pass --address http://HEAD:8265 (the Ray dashboard address) or set "
                          "RAY_API_SERVER_ADDRESS")
    address = address.strip().rstrip("/")
    shown = redact(address)
    if address.startswith("ray://") or address == "auto":
        raise SubmitError(f"{shown!r} is not a Jobs API address: use the dashboard address, http://HEAD:8265")
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise SubmitError(f"{redact(address)!r}: the Jobs API address must start with http:// or https://")
    return address


def find_token() -> tuple[str, str] | None:
    """(token, where it came from), in Ray's own order; None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN"
    for var, path in (("RAY_AUTH_TOKEN_PATH", os.environ.get("RAY_AUTH_TOKEN_PATH")),
                      ("~/.ray/auth_token", str(Path.home() / ".ray" / "auth_token"))):
        if path and Path(path).is_file():
            token = Path(path).read_text().strip()
            if token:
                return token, var
    return None


def _get(url: str, address: str, timeout: float):
    """GET with a timeout; SubmitError naming the address (credentials redacted) when nothing answers."""
    import requests

    address = redact(address)

    try:
        return requests.get(url, timeout=timeout)
    except requests.exceptions.Timeout:
        raise SubmitError(f"the Ray dashboard at {address} did not answer within {timeout:g} s; check the address "
                          f"(the head's dashboard port, 8265 by default) and that the port is reachable") from None
    except requests.exceptions.RequestException as e:
        reason = "connection refused" if "refused" in str(e).lower() else type(e).__name__
        raise SubmitError(f"cannot reach the Ray dashboard at {address} ({reason}); is the cluster up, and is this "
                          f"its dashboard address (http://HEAD:8265)?") from None


def auth_mode(address: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """``token`` or ``disabled``: what the cluster at ``address`` enforces; SubmitError when it does not answer."""
    r = _get(f"{address}/api/authentication_mode", address, timeout)
    if r.status_code == 404:  # a cluster older than token authentication, or no Ray dashboard at all
        if _get(f"{address}/api/version", address, timeout).status_code == 404:
            raise SubmitError(f"{redact(address)} does not look like a Ray dashboard (no /api/version): give the head's "
                              f"dashboard address, http://HEAD:8265")
        return "disabled"
    try:
        if r.status_code != 200:
            raise ValueError
        return str(r.json().get("authentication_mode", "disabled"))
    except ValueError:
        raise SubmitError(f"{redact(address)}/api/authentication_mode answered HTTP {r.status_code} without the expected "
                          f"JSON: is this a Ray dashboard (http://HEAD:8265)?") from None


def auth_headers(address: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[dict[str, str], str | None]:
    """Headers for every Jobs API request (the bearer token when the cluster requires one) and the token's source."""
    if auth_mode(address, timeout) != "token":
        return {}, None
    found = find_token()
    if found is None:
        raise SubmitError(f"the Ray cluster at {redact(address)} requires a token (RAY_AUTH_MODE=token) and none was found: "
                          f"set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH to a file holding it, or write it to "
                          f"~/.ray/auth_token (`ray get-auth-token` on the head prints it)")
    return {"Authorization": f"Bearer {found[0]}"}, found[1]
