"""People and rights: named users who log in from a browser, integrations with API keys of their
own, what each role may do, browser sessions, and the audit log of who opened which customer.

Everyone is configured in one TOML file (`CHURN_USERS_FILE`, written by `churn users`), never in
the repository:

```toml
[users.alice]
display_name = "Alice Martin"
role = "account_manager"
password = "$argon2id$v=19$..."   # an Argon2id hash (`churn users add`), never the password
segments = ["small_business"]       # her portfolio; none given: every customer
regions = ["north"]

[integrations.crm-outbox]
role = "integrator"
key_sha256 = "9f86d0..."            # the SHA-256 of its API key (`churn users key`)
```

| role | may |
|---|---|
| `account_manager` | read the pages of the customers of their portfolio (or of all) |
| `retention_lead` | read every customer's page, and the worklists |
| `integrator` | the API only: score, explain, events and outcomes; no page |
| `admin` | everything |

Passwords are hashed with Argon2id (argon2-cffi, the reference implementation's binding: a
maintained library, not our own hashing). API keys are long random tokens, so a SHA-256 of
each is stored (a slow hash would slow every API call and protects nothing a 32-byte token
needs). A browser logs in at `/login` and gets a session cookie: signed (itsdangerous) with the
server's secret, HttpOnly, SameSite=Lax, valid `SESSION_SECONDS`, and void once its user logs
out (on every worker of the server, copies of the cookie included), the user's password changes
or the user is removed. After `MAX_FAILED_LOGINS` wrong passwords for one user name from one
address, that name must wait up to `FAILED_LOGIN_SECONDS` there (a 429). The keys of
`CHURN_API_KEYS` (`auth.py`) keep working beside them, named "API key #n" in the audit log.

The audit log (`AuditLog`) is one JSON line per event: `at` (UTC), `who`, `role`, `action`
(`page`, `explain`, `explain_change`, `login`, `login_failed`, `logout`, `denied`),
`customer_id` where there is one, and `status`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

USERS_ENV = "CHURN_USERS_FILE"
SESSION_SECRET_ENV = "CHURN_SESSION_SECRET"
AUDIT_ENV = "CHURN_AUDIT_FILE"
#: The server's session secret in its private instance folder (`launch.server_env`), shared by
#: its workers; `CHURN_SESSION_SECRET` wins (the same on every replica behind a balancer).
SESSION_FILE = "session.key"
SESSION_COOKIE = "churn_session"
SESSION_SECONDS = 8 * 3600
#: The server's list of sessions ended by logging out, in its instance folder (`Sessions`).
ENDED_SESSIONS_FILE = "ended-sessions"
#: Failed logins of one user name from one address before it must wait (`LoginAttempts`).
MAX_FAILED_LOGINS = 5
FAILED_LOGIN_SECONDS = 15 * 60
AUDIT_FILE = "audit.jsonl"
MIN_PASSWORD_LENGTH = 10

#: What each person's role may do, in the permissions routes ask for (`auth.allows`): `pages`
#: (customer pages), `worklists`, `read` (the scoring API), `ingest` (events, outcomes).
ROLES: dict[str, frozenset[str]] = {
    "account_manager": frozenset({"pages"}),
    "retention_lead": frozenset({"pages", "worklists"}),
    "integrator": frozenset({"read", "ingest"}),
    "admin": frozenset({"admin"}),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class PeopleFileError(ValueError):
    """The users file cannot be used: the message names the file, the entry and the rule."""


@dataclass(frozen=True)
class Portfolio:
    """The customers a person may see: those of these segments and regions (none: all)."""

    segments: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()

    @property
    def everyone(self) -> bool:
        return not self.segments and not self.regions

    def holds(self, segment, region) -> bool:
        return ((not self.segments or str(segment) in self.segments)
                and (not self.regions or str(region) in self.regions))

    def describe(self) -> str:
        parts = [f"segment {', '.join(sorted(self.segments))}" if self.segments else "",
                 f"region {', '.join(sorted(self.regions))}" if self.regions else ""]
        return " and ".join(p for p in parts if p) or "every customer"


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a user, an integration or a key of `CHURN_API_KEYS`."""

    name: str
    role: str
    permissions: frozenset[str]
    portfolio: Portfolio = Portfolio()
    display_name: str | None = None
    #: A person logged in from a browser (a session), who may log out.
    session: bool = False

    def may(self, permission: str) -> bool:
        return permission in self.permissions or "admin" in self.permissions

    def may_see(self, segment, region) -> bool:
        return "admin" in self.permissions or self.portfolio.holds(segment, region)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str  # the Argon2id hash
    display_name: str | None = None
    portfolio: Portfolio = Portfolio()

    def principal(self, session: bool = False) -> Principal:
        return Principal(self.name, self.role, ROLES[self.role], self.portfolio,
                         self.display_name, session)


@dataclass(frozen=True)
class Integration:
    name: str
    role: str
    key_sha256: str

    def principal(self) -> Principal:
        return Principal(f"integration {self.name}", self.role, ROLES[self.role])


@dataclass(frozen=True)
class People:
    users: dict[str, User] = field(default_factory=dict)
    integrations: dict[str, Integration] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.users or self.integrations)

    def integration_of(self, key: str) -> Integration | None:
        """The integration whose key this is (every one compared: the time says nothing)."""
        digest = key_digest(key)
        found = None
        for integration in self.integrations.values():
            if hmac.compare_digest(digest, integration.key_sha256):
                found = integration
        return found


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def load_people(path: str | os.PathLike | None) -> People:
    """The users and integrations of the file (no file: nobody); `PeopleFileError` naming the
    file, the entry, the field and the rule when something is wrong."""
    if path is None:
        return People()
    from churn_risk.errors import UsageError
    from churn_risk.features.io import read_toml

    path = Path(path)
    try:
        data = read_toml(path, str(path), f"the users file ({USERS_ENV})")
    except UsageError as exc:
        raise PeopleFileError(str(exc)) from None
    unknown = sorted(set(data) - {"users", "integrations"})
    if unknown:
        raise PeopleFileError(f"{path}: unknown section [{unknown[0]}] (sections: [users.NAME], "
                              "[integrations.NAME])")
    users = {name: _user(path, name, entry) for name, entry in _entries(path, data, "users")}
    integrations = {name: _integration(path, name, entry)
                    for name, entry in _entries(path, data, "integrations")}
    return People(users, integrations)


def _entries(path: Path, data: dict, section: str):
    entries = data.get(section, {})
    if not isinstance(entries, dict):
        raise PeopleFileError(f"{path}: [{section}] must hold tables, e.g. [{section}.alice]")
    for name, entry in entries.items():
        if not _NAME.match(name):
            raise PeopleFileError(f"{path}: [{section}.{name}]: a name is 1-64 letters, digits, "
                                  "'_' or '-', e.g. alice")
        if not isinstance(entry, dict):
            raise PeopleFileError(f"{path}: {section}.{name} must be a table")
        yield name, entry


def _fields(path: Path, where: str, entry: dict, allowed: set[str]) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise PeopleFileError(f"{path}: {where}.{extra[0]}: unknown field (fields: "
                              f"{', '.join(sorted(allowed))})")


def _role(path: Path, where: str, entry: dict, allowed: tuple[str, ...]) -> str:
    role = entry.get("role")
    if role not in allowed:
        raise PeopleFileError(f"{path}: {where}.role: one of {', '.join(allowed)} (got "
                              f"{role!r})")
    return role


def _user(path: Path, name: str, entry: dict) -> User:
    where = f"users.{name}"
    _fields(path, where, entry, {"display_name", "role", "password", "segments", "regions"})
    role = _role(path, where, entry, tuple(r for r in ROLES if r != "integrator"))
    password = entry.get("password")
    if not isinstance(password, str) or not password.startswith("$argon2"):
        raise PeopleFileError(f"{path}: {where}.password: an Argon2 hash, as `churn users add "
                              f"{name} --role {role}` writes it (never the password itself)")
    lists = {}
    for key in ("segments", "regions"):
        value = entry.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PeopleFileError(f"{path}: {where}.{key}: a list of names, e.g. "
                                  f"{key} = [\"small_business\"]")
        lists[key] = frozenset(value)
    if role != "account_manager" and any(lists.values()):
        raise PeopleFileError(f"{path}: {where}: only an account_manager has a portfolio "
                              f"(segments, regions); a {role} sees every customer")
    display = entry.get("display_name")
    return User(name, role, password, str(display) if display else None, Portfolio(**lists))


def _integration(path: Path, name: str, entry: dict) -> Integration:
    where = f"integrations.{name}"
    _fields(path, where, entry, {"role", "key_sha256"})
    role = _role(path, where, entry, ("integrator", "admin"))
    digest = entry.get("key_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise PeopleFileError(f"{path}: {where}.key_sha256: the SHA-256 (64 hex digits) of its "
                              f"key, as `churn users key {name}` writes it")
    return Integration(name, role, digest)


def save_people(path: str | os.PathLike, people: People) -> None:
    """Write the file (private: 0600, atomically), users then integrations, sorted by name."""
    from churn_risk.features.io import atomic_write

    lines = ["# People and rights of the churn-risk service (`churn users`; see "
             "serving/people.py).", ""]
    for user in sorted(people.users.values(), key=lambda u: u.name):
        lines.append(f"[users.{user.name}]")
        if user.display_name:
            lines.append(f"display_name = {_toml(user.display_name)}")
        lines += [f"role = {_toml(user.role)}", f"password = {_toml(user.password)}"]
        for key, values in (("segments", user.portfolio.segments),
                            ("regions", user.portfolio.regions)):
            if values:
                lines.append(f"{key} = [{', '.join(_toml(v) for v in sorted(values))}]")
        lines.append("")
    for integration in sorted(people.integrations.values(), key=lambda i: i.name):
        lines += [f"[integrations.{integration.name}]", f"role = {_toml(integration.role)}",
                  f"key_sha256 = {_toml(integration.key_sha256)}", ""]
    atomic_write(Path(path), "\n".join(lines), mode=0o600)


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(str(text), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    from argon2 import PasswordHasher

    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    return PasswordHasher().hash(password)


#: Verified against when the user name is unknown, so the time does not tell.
_DUMMY = None


def check_password(user: User | None, password: str) -> bool:
    """Whether `password` is `user`'s (an unknown user costs the same time: False)."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    global _DUMMY
    if _DUMMY is None:
        _DUMMY = PasswordHasher().hash(secrets.token_urlsafe(16))
    try:
        PasswordHasher().verify(user.password if user is not None else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


class Sessions:
    """Signed, expiring session cookies naming a user and a session of theirs; void once the
    session was ended (`end`: logging out), the user's password changed or the user removed.

    Ended sessions are listed in `ended_file` (one line each, appended; every worker of a server
    reads it when it grows), so a copy of a cookie taken before logging out is refused too."""

    def __init__(self, secret: bytes, ended_file: str | os.PathLike | None = None):
        from itsdangerous import URLSafeTimedSerializer

        self._signer = URLSafeTimedSerializer(secret, salt="churn-session")
        self._ended_file = None if ended_file is None else Path(ended_file)
        self._ended: set[str] = set()
        self._ended_read = 0  # bytes of the file read so far
        self._lock = threading.Lock()

    def issue(self, user: User) -> str:
        return self._signer.dumps({"u": user.name, "p": _fingerprint(user),
                                   "s": secrets.token_urlsafe(12)})

    def user_of(self, cookie: str | None, people: People) -> User | None:
        data = self._session(cookie)
        if data is None or data["s"] in self._ended_sessions():
            return None
        user = people.users.get(data["u"])
        if user is None or not hmac.compare_digest(str(data["p"]), _fingerprint(user)):
            return None
        return user

    def end(self, cookie: str | None) -> None:
        """End the session of `cookie` (on this server's every worker)."""
        data = self._session(cookie)
        if data is None:
            return
        with self._lock:
            self._ended.add(data["s"])
            if self._ended_file is None:  # one process: ended in it only
                return
            try:
                with open(self._ended_file, "a", encoding="utf-8") as out:
                    out.write(f"{data['s']}\n")  # one short append: whole even beside others
            except OSError as exc:  # the browser's cookie is still cleared
                import logging

                logging.getLogger(__name__).error("session ended in this worker only: cannot "
                                                  "write %s (%s)", self._ended_file, exc)

    def _session(self, cookie: str | None) -> dict | None:
        """The signed content of a cookie still in time, or None."""
        from itsdangerous import BadSignature

        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:  # forged, tampered with, or expired
            return None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str)
                                                 for k in ("u", "p", "s")):
            return None
        return data

    def _ended_sessions(self) -> set[str]:
        if self._ended_file is None:
            return self._ended
        with self._lock:
            try:
                size = self._ended_file.stat().st_size
            except FileNotFoundError:
                size = 0
            if size > self._ended_read:
                with open(self._ended_file, encoding="utf-8") as lines:
                    lines.seek(self._ended_read)
                    grown = lines.read(size - self._ended_read)
                whole = grown[:grown.rfind("\n") + 1]  # a line still being written waits
                self._ended.update(whole.split())
                self._ended_read += len(whole.encode())
            return self._ended


class LoginAttempts:
    """Logins per user name and address, in this worker: after `MAX_FAILED_LOGINS` failed ones
    within `FAILED_LOGIN_SECONDS`, that name is refused from that address until the oldest
    failure is that old (a person elsewhere is not locked out by someone guessing; behind a
    proxy that hides the address, everyone shares one). An attempt counts as failed from the
    start, before its password is checked, so guesses sent at once are counted too; a
    success forgets the name's failures there."""

    #: Names and addresses remembered before the stale ones are forgotten.
    MAX_KEPT = 10_000

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, name: str, address: str, now: float | None = None) -> float:
        """0 when `name` may try from `address` now (the attempt is counted), else the
        seconds to wait (it is not)."""
        now = time.monotonic() if now is None else now
        key = (name, address)
        with self._lock:
            if len(self._failures) >= self.MAX_KEPT:
                self._failures = {k: v for k, v in self._failures.items()
                                  if now - v[-1] < FAILED_LOGIN_SECONDS}
            recent = [t for t in self._failures.get(key, ()) if now - t < FAILED_LOGIN_SECONDS]
            if len(recent) >= MAX_FAILED_LOGINS:
                self._failures[key] = recent
                return FAILED_LOGIN_SECONDS - (now - recent[0])
            self._failures[key] = [*recent, now]
            return 0.0

    def succeeded(self, name: str, address: str) -> None:
        with self._lock:
            self._failures.pop((name, address), None)


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password.encode()).hexdigest()[:16]


def session_secret(instance_dir: str | None) -> bytes:
    """`CHURN_SESSION_SECRET`, else the server's own (`SESSION_FILE`), else a new one (this
    process only: sessions then hold on one worker)."""
    given = os.environ.get(SESSION_SECRET_ENV)
    if given:
        return given.encode()
    if instance_dir is not None:
        path = Path(instance_dir) / SESSION_FILE
        if path.is_file():
            return path.read_bytes()
    return secrets.token_bytes(32)


def write_session_secret(instance_dir: Path) -> None:
    """A new secret for a server's sessions, in its private instance folder."""
    from churn_risk.features.io import atomic_write

    atomic_write(instance_dir / SESSION_FILE, secrets.token_bytes(32), mode=0o600)


# --------------------------------------------------------------------------------------------
# Audit
# --------------------------------------------------------------------------------------------


class AuditLog:
    """Appends one JSON line per event to a file; each line is one `write` to a file opened for
    appending, so the lines of several workers never interleave."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, who: Principal | str | None, action: str, status: int,
              customer_id=None) -> None:
        entry = {"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "who": who.name if isinstance(who, Principal) else who,
                 "role": who.role if isinstance(who, Principal) else None,
                 "action": action, "status": status}
        if customer_id is not None:
            entry["customer_id"] = str(customer_id)
        line = (json.dumps(entry) + "\n").encode()
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)

    def entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
