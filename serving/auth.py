"""API keys and their roles: from CHURN_API_KEYS (comma-separated) or the file named by
CHURN_API_KEYS_FILE (one key per line), never from the repository.

Each key has roles, written before it: `ingest:KEY`, `read+ingest:KEY`, `admin:KEY`; a key
without a prefix is `read`. The roles:

Named people (browser logins) and integrations with keys of their own are configured in a users
file beside these (`people.py`).

| role | may |
|---|---|
| `read` | score, explain, read pages and metrics |
| `ingest` | send CRM events and outcomes (`POST /events`, `/outcomes`), nothing else |
| `admin` | everything |

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


ROLES = ("read", "ingest", "admin")
#: A key with no role written before it.
DEFAULT_ROLE = "read"

#: Configured keys: each key and its roles.
Keys = dict[str, frozenset[str]]


def load_keys(environ: Mapping[str, str] | None = None) -> Keys:
    """The configured keys with their roles; `NoKeysConfigured` naming the problem when one is
    too short, has an unknown role, or the file cannot be read."""
    environ = os.environ if environ is None else environ
    entries = [k.strip() for k in environ.get(KEYS_ENV, "").split(",") if k.strip()]
    path = environ.get(KEYS_FILE_ENV)
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise NoKeysConfigured(f"{KEYS_FILE_ENV}={path}: cannot read the key file "
                                   f"({exc.strerror})") from None
        entries += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    keys: Keys = {}
    for n, entry in enumerate(entries, 1):
        roles, key = _roles_and_key(entry, n)
        if len(key) < MIN_KEY_LENGTH:
            raise NoKeysConfigured(
                f"API key #{n} has {len(key)} characters: keys need at least {MIN_KEY_LENGTH} "
                f"(make one with: {MAKE_A_KEY})")
        keys[key] = keys.get(key, frozenset()) | roles
    return keys


def _roles_and_key(entry: str, n: int) -> tuple[frozenset[str], str]:
    prefix, sep, key = entry.partition(":")
    if not sep:
        return frozenset({DEFAULT_ROLE}), entry
    roles = frozenset(r.strip() for r in prefix.split("+"))
    unknown = sorted(roles - set(ROLES))
    if unknown:
        raise NoKeysConfigured(f"API key #{n}: unknown role {unknown[0]!r} (roles: "
                               f"{', '.join(ROLES)}; e.g. ingest:KEY or read+ingest:KEY)")
    return roles, key.strip()


def required_keys(environ: Mapping[str, str] | None = None, insecure_dev: bool = False,
                  people: bool = False) -> Keys | None:
    """The keys to check (empty when only the users file's people and integrations may
    enter), or None in --insecure-dev mode. Refuses to run with none of them."""
    keys = load_keys(environ)
    if keys or people:
        return keys
    if insecure_dev:
        return None
    raise NoKeysConfigured(
        f"no API key configured: set {KEYS_ENV} (comma-separated) or {KEYS_FILE_ENV} (a file, "
        f"one key per line; make a key with: {MAKE_A_KEY}), or name a users file in "
        "CHURN_USERS_FILE (`churn users add`), or start with `churn serve --insecure-dev` for "
        "a local demo")


def permissions(roles: frozenset[str]) -> frozenset[str]:
    """What a key with these roles may do: `read` also reads the pages and worklists."""
    return roles | ({"pages", "worklists"} if "read" in roles else frozenset())


def key_of(header: str | None) -> str | None:
    """The key an Authorization header carries: Bearer, or Basic with the key as password."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip() or None
    if scheme == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode().partition(
                ":")[2] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def roles_of(header: str | None, keys: Keys) -> frozenset[str] | None:
    """The roles of the key an Authorization header carries, or None for no valid key."""
    given = key_of(header)
    if given is None:
        return None
    found = None
    for key, roles in keys.items():  # every key compared: the time says nothing of which
        if hmac.compare_digest(given.encode(), key.encode()):
            found = roles
    return found
