"""API keys: from CHURN_API_KEYS (comma-separated) or the file named by CHURN_API_KEYS_FILE
(one key per line), never from the repository.

Clients send `Authorization: Bearer <key>`. A browser opening the account-manager page can use
HTTP Basic instead (any user name, the key as password): the page's 401 asks for it.
"""

from __future__ import annotations

import base64
import hmac
import os
from pathlib import Path

KEYS_ENV = "CHURN_API_KEYS"
KEYS_FILE_ENV = "CHURN_API_KEYS_FILE"
INSECURE_ENV = "CHURN_INSECURE_DEV"


class NoKeysConfigured(RuntimeError):
    pass


def load_keys(environ: dict | None = None) -> frozenset[str]:
    environ = os.environ if environ is None else environ
    keys = {k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()}
    path = environ.get(KEYS_FILE_ENV)
    if path:
        lines = Path(path).read_text().splitlines()
        keys |= {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    return frozenset(keys)


def insecure(environ: dict | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(INSECURE_ENV, "") in ("1", "true", "True")


def required_keys(environ: dict | None = None) -> frozenset[str] | None:
    """The keys to check, or None in --insecure-dev mode. Refuses to run without either."""
    keys = load_keys(environ)
    if keys:
        return keys
    if insecure(environ):
        return None
    raise NoKeysConfigured(
        f"no API key configured: set {KEYS_ENV} (comma-separated) or {KEYS_FILE_ENV} (a file, "
        "one key per line), or start with --insecure-dev for a local demo"
    )


def authorized(header: str | None, keys: frozenset[str] | None) -> bool:
    """Whether an Authorization header carries one of `keys` (always true when keys is None)."""
    if keys is None:
        return True
    if not header:
        return False
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        given = credentials.strip()
    elif scheme == "basic":
        try:
            given = base64.b64decode(credentials.strip()).decode().partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)
