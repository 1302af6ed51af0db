"""People and rights: the users file, Argon2 passwords, signed sessions, and on a real server the
roles (an account manager sees their portfolio's pages only, an integrator the API only), the
login form in Chromium, and the audit log of who opened which customer."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from churn_risk.serving.people import (
    ENDED_SESSIONS_FILE,
    FAILED_LOGIN_SECONDS,
    MAX_FAILED_LOGINS,
    SESSION_COOKIE,
    AuditLog,
    Integration,
    LoginAttempts,
    People,
    PeopleFileError,
    Portfolio,
    Sessions,
    User,
    check_password,
    hash_password,
    key_digest,
    load_people,
    save_people,
)
from tests.serve import assert_problem, bearer, request, running

from . import browser

KEY = "legacy-read-key-0123456789"
PASSWORD = "correct horse battery"
INTEGRATION_KEY = "integration-key-0123456789abcdef"


# --------------------------------------------------------------------------------------------
# The file, passwords and sessions
# --------------------------------------------------------------------------------------------


def test_a_users_file_round_trips_and_keeps_no_secret_in_clear(tmp_path):
    people = People(
        {"alice": User("alice", "account_manager", hash_password(PASSWORD), "Alice Martin",
                       Portfolio(frozenset({"consumer"}), frozenset()))},
        {"crm-outbox": Integration("crm-outbox", "integrator", key_digest(INTEGRATION_KEY))})
    path = tmp_path / "users.toml"
    save_people(path, people)
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    assert PASSWORD not in text and INTEGRATION_KEY not in text
    assert load_people(path) == people
    loaded = load_people(path)
    assert loaded.integration_of(INTEGRATION_KEY).name == "crm-outbox"
    assert loaded.integration_of(INTEGRATION_KEY + "x") is None
    assert check_password(loaded.users["alice"], PASSWORD)
    assert not check_password(loaded.users["alice"], PASSWORD + "!")
    assert not check_password(None, PASSWORD)  # an unknown user


@pytest.mark.parametrize(("text", "message"), [
    ('[users.alice]\nrole = "boss"\npassword = "$argon2id$x"\n',
     "users.alice.role: one of account_manager, retention_lead, admin (got 'boss')"),
    ('[users.alice]\nrole = "admin"\npassword = "hunter2hunter2"\n',
     "users.alice.password: an Argon2 hash"),
    ('[users.alice]\nrole = "retention_lead"\npassword = "$argon2id$x"\nsegments = ["a"]\n',
     "only an account_manager has a portfolio"),
    ('[users.alice]\nrole = "account_manager"\npassword = "$argon2id$x"\nsegments = "a"\n',
     "users.alice.segments: a list of names"),
    ('[users.alice]\nrole = "admin"\npassword = "$argon2id$x"\nemail = "a@b"\n',
     "users.alice.email: unknown field"),
    ('[integrations.crm]\nrole = "integrator"\nkey_sha256 = "abc"\n',
     "integrations.crm.key_sha256: the SHA-256"),
    ('[people.alice]\n', "unknown section [people]"),
    ('[users.alice\n', "not valid TOML"),
])
def test_a_bad_users_file_is_refused_naming_the_entry_and_the_rule(tmp_path, text, message):
    path = tmp_path / "users.toml"
    path.write_text(text)
    with pytest.raises(PeopleFileError) as raised:
        load_people(path)
    assert message in str(raised.value) and str(path) in str(raised.value)


def test_a_session_names_its_user_until_it_expires_is_forged_or_the_password_changes(
        monkeypatch):
    from churn_risk.serving import people as module

    alice = User("alice", "account_manager", hash_password(PASSWORD))
    everyone = People({"alice": alice})
    sessions = Sessions(b"s" * 32)
    cookie = sessions.issue(alice)
    assert sessions.user_of(cookie, everyone) == alice
    payload, timestamp, signature = cookie.split(".")
    for tampered in (f"{_changed(payload)}.{timestamp}.{signature}",
                     f"{payload}.{timestamp}.{_changed(signature)}"):
        assert sessions.user_of(tampered, everyone) is None
    assert Sessions(b"t" * 32).user_of(cookie, everyone) is None  # another server's secret
    changed = People({"alice": replace(alice, password=hash_password(PASSWORD + "2"))})
    assert sessions.user_of(cookie, changed) is None
    assert sessions.user_of(cookie, People()) is None  # removed
    monkeypatch.setattr(module, "SESSION_SECONDS", -1)
    assert sessions.user_of(cookie, everyone) is None  # expired


def test_logging_out_ends_the_session_on_every_worker_copies_of_the_cookie_included(tmp_path):
    alice = User("alice", "account_manager", "$argon2id$x")
    everyone = People({"alice": alice})
    ended = tmp_path / ENDED_SESSIONS_FILE
    worker, other = Sessions(b"s" * 32, ended), Sessions(b"s" * 32, ended)
    at_office, at_home = worker.issue(alice), worker.issue(alice)
    assert other.user_of(at_office, everyone) == alice  # another worker reads it too
    worker.end(at_office)
    assert worker.user_of(at_office, everyone) is None
    assert other.user_of(at_office, everyone) is None  # learnt from the file
    assert other.user_of(at_home, everyone) == alice  # her other session goes on
    assert Sessions(b"s" * 32, ended).user_of(at_office, everyone) is None  # a new worker
    with open(ended, "a") as half:
        half.write("partial-line-no-newline")  # another worker in the middle of a write
    assert other.user_of(at_home, everyone) == alice
    from itsdangerous import URLSafeTimedSerializer
    older = URLSafeTimedSerializer(b"s" * 32, salt="churn-session").dumps(
        {"u": "alice", "p": "x"})  # a cookie of before sessions had ids
    assert worker.user_of(older, everyone) is None


def test_wrong_passwords_make_one_name_at_one_address_wait():
    attempts = LoginAttempts()
    for i in range(MAX_FAILED_LOGINS):  # counted before their passwords are checked
        assert attempts.attempt("alice", "10.0.0.9", now=100.0 + i) == 0
    assert attempts.attempt("alice", "10.0.0.9", now=110.0) == FAILED_LOGIN_SECONDS - 10
    assert attempts.attempt("alice", "10.0.0.7", now=110.0) == 0  # alice, elsewhere
    assert attempts.attempt("bob", "10.0.0.9", now=110.0) == 0
    # once the oldest failure is old enough, one more try
    assert attempts.attempt("alice", "10.0.0.9", now=100.0 + FAILED_LOGIN_SECONDS) == 0
    assert attempts.attempt("alice", "10.0.0.9", now=100.0 + FAILED_LOGIN_SECONDS) > 0
    attempts.succeeded("alice", "10.0.0.9")  # her password: her failures there forgotten
    assert attempts.attempt("alice", "10.0.0.9", now=110.0) == 0
    attempts.MAX_KEPT = 2  # stale names are forgotten, not kept forever
    attempts.attempt("carol", "10.0.0.1", now=100.0 + 3 * FAILED_LOGIN_SECONDS)
    assert len(attempts._failures) <= 2


def _changed(text: str) -> str:
    """`text` with its middle character replaced: a whole base64 digit, so the decoded bytes
    differ (the last digit of a signature may carry only padding bits)."""
    middle = len(text) // 2
    return text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1:]


def test_an_account_manager_sees_the_customers_of_their_portfolio():
    portfolio = Portfolio(frozenset({"consumer"}), frozenset({"north"}))
    manager = User("m", "account_manager", "$argon2id$x", portfolio=portfolio).principal()
    assert manager.may_see("consumer", "north") and not manager.may_see("consumer", "south")
    assert not manager.may_see("enterprise", "north")
    assert manager.may("pages") and not manager.may("read") and not manager.may("worklists")
    lead = User("l", "retention_lead", "$argon2id$x").principal()
    assert lead.may("worklists") and lead.may_see("enterprise", "south")
    admin = User("a", "admin", "$argon2id$x").principal()
    assert admin.may("ingest") and admin.may_see("anything", None)


def test_the_audit_log_appends_one_json_line_per_event(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    who = User("alice", "account_manager", "$argon2id$x").principal(session=True)
    log.write(who, "page", 200, 100123)
    log.write("mallory", "login_failed", 401)
    first, second = log.entries()
    assert (first["who"], first["role"], first["action"], first["customer_id"],
            first["status"]) == ("alice", "account_manager", "page", "100123", 200)
    assert second["who"] == "mallory" and "customer_id" not in second
    assert pd.Timestamp(first["at"]) <= pd.Timestamp.now(tz="UTC")


def test_churn_users_writes_the_file_and_refuses_a_short_password(tmp_path, monkeypatch,
                                                                   capsys):
    import io

    from churn_risk.cli import main

    path = tmp_path / "users.toml"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["users", "add", "alice", "--role", "account_manager", "--segment", "consumer",
                 "--file", str(path), "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["users", "add", "bob", "--role", "admin", "--file", str(path),
                 "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert main(["users", "key", "crm", "--file", str(path)]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    people = load_people(path)
    assert set(people.users) == {"alice"} and people.integration_of(key).name == "crm"
    assert check_password(people.users["alice"], PASSWORD)
    assert main(["users", "remove", "crm", "--file", str(path)]) == 0
    assert not load_people(path).integrations


# --------------------------------------------------------------------------------------------
# A real server with users
# --------------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, data: dict | None = None, headers: dict | None = None):
    """(status, headers, text) of one request, redirects not followed."""
    body = None if data is None else urllib.parse.urlencode(data).encode()
    req = urllib.request.Request(url, data=body, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(req, timeout=60) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def log_in(base: str, user: str, password: str = PASSWORD, next_path: str = "/") -> str:
    """The session cookie header of a login (asserting it was accepted)."""
    status, headers, _ = fetch(f"{base}/login", {"user": user, "password": password,
                                                 "next": next_path})
    assert status == 303 and headers["Location"] == next_path
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=28800" in cookie
    return cookie.split(";")[0]


@pytest.fixture(scope="module")
def staffed(demo_folder, champion_project, tmp_path_factory):
    """A server on the demo data with a users file: an account manager for consumers, a
    retention lead, an integration; and the legacy read key."""
    folder = tmp_path_factory.mktemp("people")
    users, audit = folder / "users.toml", folder / "audit.jsonl"
    hashed = hash_password(PASSWORD)
    save_people(users, People(
        {"alice": User("alice", "account_manager", hashed, "Alice Martin",
                       Portfolio(frozenset({"consumer"}), frozenset())),
         "rita": User("rita", "retention_lead", hashed)},
        {"crm-outbox": Integration("crm-outbox", "integrator", key_digest(INTEGRATION_KEY))}))
    customers = pd.read_parquet(Path(demo_folder) / "customers.parquet") if (
        Path(demo_folder) / "customers.parquet").exists() else pd.read_csv(
        Path(demo_folder) / "customers.csv")
    with running(demo_folder, champion_project, KEY, CHURN_USERS_FILE=users,
                 CHURN_AUDIT_FILE=audit) as base:
        yield {"base": base, "audit": AuditLog(audit), "users": users,
               **{segment: _served(base, customers.loc[customers["segment"] == segment,
                                                       "customer_id"])
                  for segment in ("consumer", "enterprise")}}


def _served(base: str, candidates: pd.Series) -> str:
    """The first of `candidates` the server scores (a current customer: a former one has a
    page too)."""
    for customer in candidates.astype(str):
        status, _, answer = request(base, "/score", {"customer_ids": [customer]},
                                    headers=bearer(KEY))
        if status == 200 and answer["results"]:
            return customer
    raise AssertionError("no current customer among the candidates")


def test_a_browser_without_a_session_is_sent_to_the_login_form(staffed):
    base, customer = staffed["base"], staffed["consumer"]
    status, headers, _ = fetch(f"{base}/customers/{customer}", headers={"Accept": "text/html"})
    assert status == 303 and headers["Location"] == f"/login?next=/customers/{customer}"
    status, headers, text = fetch(f"{base}/login?next=/customers/{customer}")
    assert status == 200 and 'name="password"' in text and f'value="/customers/{customer}"' in text
    assert "form-action 'self'" in headers["Content-Security-Policy"]
    # a program (no HTML asked for) gets the documented 401 problem
    assert_problem(request(base, f"/customers/{customer}", headers={}), 401, "unauthorized")


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(staffed):
    base = staffed["base"]
    for user, password in (("alice", "not the password"), ("nobody", PASSWORD)):
        status, headers, text = fetch(f"{base}/login", {"user": user, "password": password})
        assert status == 401 and "Wrong user name or password." in text
        assert "Set-Cookie" not in headers
    failed = [e for e in staffed["audit"].entries() if e["action"] == "login_failed"]
    assert {e["who"] for e in failed} >= {"alice", "nobody"}
    # never sent to another site after logging in
    status, headers, _ = fetch(f"{base}/login", {"user": "alice", "password": PASSWORD,
                                                 "next": "//evil.example/x"})
    assert status == 303 and headers["Location"] == "/"


def test_an_account_manager_reads_their_portfolio_only_and_every_opening_is_audited(staffed):
    base = staffed["base"]
    cookie = {"Cookie": log_in(base, "alice"), "Accept": "text/html"}
    status, _, text = fetch(f"{base}/customers/{staffed['consumer']}", headers=cookie)
    assert status == 200 and "Signed in as <strong>Alice Martin</strong>" in text
    status, _, text = fetch(f"{base}/customers/{staffed['enterprise']}", headers=cookie)
    assert status == 403 and "not in your portfolio (segment consumer)" in text
    # the API is not for people: no scoring with a session
    assert_problem(request(base, "/score", {"customer_ids": [staffed["consumer"]]},
                           headers={"Cookie": cookie["Cookie"]}), 403, "forbidden")
    status, _, text = fetch(f"{base}/worklist", headers=cookie)  # worklists: a lead's
    assert status == 403 and "needs the permission 'worklists'" in text
    opened = [(e["who"], e["action"], e.get("customer_id"), e["status"])
              for e in staffed["audit"].entries()]
    assert ("alice", "page", staffed["consumer"], 200) in opened
    assert ("alice", "page", staffed["enterprise"], 403) in opened
    assert ("alice", "login", None, 303) in opened


def test_a_retention_lead_reads_every_customer_and_logging_out_ends_the_browser_session(staffed):
    base = staffed["base"]
    cookie = log_in(base, "rita")
    for customer in (staffed["consumer"], staffed["enterprise"]):
        status, _, _ = fetch(f"{base}/customers/{customer}", headers={"Cookie": cookie})
        assert status == 200
    status, _, text = fetch(f"{base}/worklist?channel=contact_center&budget=2000",
                            headers={"Cookie": cookie})
    assert status == 200 and "Today's worklist: Contact center" in text
    status, headers, _ = fetch(f"{base}/logout", {}, headers={"Cookie": cookie})
    assert status == 303 and headers["Location"] == "/login"
    assert f"{SESSION_COOKIE}=\"\"" in headers["Set-Cookie"] and "Max-Age=0" in headers[
        "Set-Cookie"]
    assert ("rita", "logout") in {(e["who"], e["action"]) for e in staffed["audit"].entries()}
    for _ in range(4):  # a copy of the cookie kept after logging out: refused by every worker
        status, headers, _ = fetch(f"{base}/customers/{staffed['consumer']}",
                                   headers={"Cookie": cookie, "Accept": "text/html"})
        assert status == 303 and headers["Location"].startswith("/login")


def test_guessing_passwords_is_slowed_to_a_few_tries_per_quarter_hour(staffed):
    """Each worker counts for itself: of `MAX_FAILED_LOGINS` × 2 + 1 wrong tries, one worker
    has seen more than `MAX_FAILED_LOGINS`."""
    base = staffed["base"]
    answers = [fetch(f"{base}/login", {"user": "mallory", "password": f"guess-{i:05d}"})
               for i in range(MAX_FAILED_LOGINS * 2 + 1)]
    refused = [a for a in answers if a[0] == 429]
    assert refused and all(a[0] in (401, 429) for a in answers)
    assert "Too many wrong passwords: try again in 15 minutes." in refused[0][2]
    assert 0 < int(refused[0][1]["Retry-After"]) <= FAILED_LOGIN_SECONDS
    assert "Set-Cookie" not in refused[0][1]
    audited = [e for e in staffed["audit"].entries() if e["who"] == "mallory"]
    assert {e["status"] for e in audited} == {401, 429}


def test_an_integration_key_may_use_the_api_but_not_the_pages_and_the_old_keys_still_work(
        staffed):
    base, customer = staffed["base"], staffed["consumer"]
    status, _, answer = request(base, "/score", {"customer_ids": [customer]},
                                headers=bearer(INTEGRATION_KEY))
    assert status == 200 and answer["results"][0]["customer_id"] in (customer, int(customer))
    problem = assert_problem(request(base, f"/customers/{customer}",
                                     headers=bearer(INTEGRATION_KEY)), 403, "forbidden")
    assert "integration crm-outbox (integrator)" in problem["detail"]
    status, _, _ = request(base, f"/customers/{customer}", headers=bearer(KEY))
    assert status == 200


def test_logging_in_from_chromium_reaches_the_page_asked_for(staffed, tmp_path):
    """A person in a real browser: the page asks for a login, the form is filled and sent, and
    the customer's page shows who is signed in."""
    base, customer = staffed["base"], staffed["consumer"]
    with browser.page_session(f"{base}/customers/{customer}") as tab:
        assert tab.evaluate("location.pathname") == "/login"
        tab.evaluate("document.querySelector('#user').value = 'alice';"
                     f"document.querySelector('#password').value = {PASSWORD!r};"
                     "document.querySelector('form').submit()", wait_for_load=True)
        assert tab.evaluate("location.pathname") == f"/customers/{customer}"
        text = tab.evaluate("document.body.innerText")
        shot = tab.screenshot(tmp_path / "signed-in.png")
    assert "Signed in as Alice Martin" in text and "Log out" in text
    browser.assert_painted(shot)
