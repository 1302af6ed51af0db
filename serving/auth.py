"""API keys: from CHURN_API_KEYS (comma-separated) or the file named by CHURN_API_KEYS_FILE
(one key per line), never from the repository.

Clients send `Authorization: Bearer <key>`. A browser opening the account-manager page can use
HTTP Basic instead (any user name, the key as password): the page's 401 asks for it.

A key is at least `MIN_KEY_LENGTH` characters (a short one is refused at start-up). Nothing in
the environment turns authentication off: only `churn serve --insecure-dev` does, for a server
bound to the loopback interface (see `settings.py`).
"""

from __future__ import annotations

import base64
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

KEYS_ENV = "CHURN_API_KEYS"
KEYS_FILE_ENV = "CHURN_API_KEYS_FILE"
MIN_KEY_LENGTH = 16
MAKE_A_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class NoKeysConfigured(RuntimeError):
    """No usable API key (none, or one too short)."""


def load_keys(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The configured keys; `NoKeysConfigured` naming the problem when one is too short or the
    file cannot be read."""
    environ = os.environ if environ is None else environ
    keys = [k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    path = environ.get(KEYS_FILE_ENV)
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise NoKeysConfigured(f"{KEYS_FILE_ENV}={path}: cannot read the key file "
                                   f"({exc.strerror})") from None
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for n, key in enumerate(keys, 1):
        if len(key) < MIN_KEY_LENGTH:
            raise NoKeysConfigured(
                f"API key #{n} has {len(key)} characters: keys need at least {MIN_KEY_LENGTH} "
                f"(make one with: {MAKE_A_KEY})")
    return frozenset(keys)


def required_keys(environ: Mapping[str, str] | None = None, insecure_dev: bool = False
                  ) -> frozenset[str] | None:
    """The keys to check, or None in --insecure-dev mode. Refuses to run without either."""
    keys = load_keys(environ)
    if keys:
        return keys
    if insecure_dev:
        return None
    raise NoKeysConfigured(
        f"no API key configured: set {KEYS_ENV} (comma-separated) or {KEYS_FILE_ENV} (a file, "
        f"one key per line; make a key with: {MAKE_A_KEY}), or start with "
        "`churn serve --insecure-dev` for a local demo")


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
            given = base64.b64decode(credentials.strip(), validate=True).decode().partition(
                ":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return any(hmac.compare_digest(given.encode(), key.encode()) for key in keys)
