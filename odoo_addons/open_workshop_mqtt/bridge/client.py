# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The bridge's HTTP API as Odoo uses it: ``POST /config`` and ``GET /health``.

Every call has short timeouts (a save must not hang on a bridge that is
away) and never raises: the outcome, including an unreachable bridge, is a
``Reply`` the caller records and shows.
"""

import json

import requests

# One number for connecting and for each read (Odoo's test harness accepts no pair).
# The bridge answers a push once applied; 10,000 devices take it about a second.
PUSH_TIMEOUT_S = 8.0
HEALTH_TIMEOUT_S = 5.0


class Reply:
    """What one call to the bridge gave.

    ``status_code`` is None when no HTTP answer came (``error`` says why);
    ``body`` is the decoded JSON object, or None; ``errors`` the 422 list of
    ``(path, message)``.
    """

    __slots__ = ("body", "error", "errors", "status_code")

    def __init__(self, status_code=None, body=None, error=None, errors=()):
        self.status_code = status_code
        self.body = body
        self.error = error
        self.errors = list(errors)

    @property
    def ok(self):
        """True when the bridge answered 200 with a JSON object."""
        return self.status_code == 200 and isinstance(self.body, dict)

    @property
    def refused(self):
        """True when the bridge refused the document itself (HTTP 422 or 413)."""
        return self.status_code in (413, 422)

    def summary(self):
        """One line for logs and the settings: what happened."""
        if self.status_code is None:
            return f"bridge unreachable: {self.error}"
        if self.ok:
            return str(self.body.get("message") or "ok")
        message = self.body.get("message") if isinstance(self.body, dict) else None
        return f"HTTP {self.status_code}: {message or self.error or 'unexpected answer'}"


def _url(base_url, path):
    return base_url.rstrip("/") + path


def _decode(response):
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _errors(body):
    found = []
    for item in (body or {}).get("errors") or []:
        if isinstance(item, dict):
            found.append((str(item.get("path") or ""), str(item.get("message") or "")))
    return found


def post_config(base_url, token, document, timeout=PUSH_TIMEOUT_S):
    """``POST {base_url}/config`` with ``document`` and the bearer ``token`` when set."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = requests.post(
            _url(base_url, "/config"),
            data=json.dumps(document).encode("utf-8"),
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        return Reply(error=_reason(err))
    body = _decode(response)
    error = None if body is not None else (response.text or "")[:200]
    return Reply(response.status_code, body, error, _errors(body))


def get_health(base_url, timeout=HEALTH_TIMEOUT_S):
    """``GET {base_url}/health``."""
    try:
        response = requests.get(
            _url(base_url, "/health"),
            headers={"Accept": "application/json"},
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        return Reply(error=_reason(err))
    body = _decode(response)
    return Reply(response.status_code, body, None if body is not None else "not JSON")


def _reason(err):
    # requests' messages repeat the whole URL and pool internals; keep the gist.
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection refused or host not found"
    return type(err).__name__
