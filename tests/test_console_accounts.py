"""Console accounts: the client's password rules (pure), the KDF, and the account functions
on the database (SQLite and PostgreSQL): roles, one account per agent, lockout in a window,
disabling, resets, monthly rotation, sessions, and the append-only audit log."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, text

from agent_console import accounts, passwords
from agent_console.i18n import CATALOGUE, from_accept_language
from agent_console.passwords import PasswordRules, has_date, has_digit_run, problems, rotation_due
from agent_console.schema import Account, AuditEntry, CampaignTeam, ConsoleSession
from agent_console.settings import Settings
from campaigns.admin import add_agent
from campaigns.db import sessions, transaction

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
GOOD = "Qm7#vTr!pLx2"
SETTINGS = Settings(max_failures=3, failure_window=dt.timedelta(minutes=10), lockout=dt.timedelta(minutes=30))


# ---------------------------------------------------------------- the rules, pure

@pytest.mark.parametrize("password", ["Ab#123456xyz", "Ab#654321xyz", "Ab#888888xyz", "Zz!x7890qwER", "Kq!1111abcDE"])
def test_simple_digit_runs_are_refused(password):
    assert has_digit_run(password)
    assert "digit_run" in problems(password)


@pytest.mark.parametrize("password", ["Ab#135xyzQW9", "Tr!582kLq#07", "Qm7#vTr!pLx2"])
def test_short_or_broken_runs_are_allowed(password):
    assert not has_digit_run(password)


@pytest.mark.parametrize("password", ["Li!19850612wei", "Li!850612Wei#", "Li!12061985Wei", "Li!1985-06-12W",
                                      "Li!12/06/1985W", "Li!1985.6.12Wx", "Wei#2001年3月8日x"])
def test_birthdays_and_dates_are_refused(password):
    assert has_date(password), password
    assert "date" in problems(password)


@pytest.mark.parametrize("password", ["Li!19851399wei", "Li!991399Wei#", GOOD])
def test_numbers_that_are_no_date_pass_the_date_rule(password):
    assert not has_date(password)


def test_length_classes_username_and_role_minimums():
    assert problems("Ab#1x") == ["too_short"]
    assert problems("abcdefghijk") == ["too_few_classes"]
    assert problems("Wangli#Qx7Lm", username="wangli") == ["contains_username"]
    assert problems(" Qm7#vTr!pLx2") == ["whitespace"]
    assert problems(GOOD, role="agent") == []
    assert problems(GOOD, role="administrator") == []  # administrators need 12 characters; GOOD has 12
    rules = PasswordRules(min_length_administrator=13)
    assert problems(GOOD, role="administrator", rules=rules) == ["too_short"]


def test_administrators_rotate_monthly_others_do_not():
    changed = NOW - dt.timedelta(days=29, hours=23)
    assert not rotation_due("administrator", changed, NOW)
    assert rotation_due("administrator", NOW - dt.timedelta(days=30), NOW)
    assert not rotation_due("agent", NOW - dt.timedelta(days=400), NOW)
    assert rotation_due("supervisor", NOW - dt.timedelta(days=90), NOW, PasswordRules(rotation_days={"supervisor": 90}))


def test_scrypt_hashes_are_salted_and_verify():
    one, two = passwords.hash_password(GOOD), passwords.hash_password(GOOD)
    assert one != two and one.startswith("scrypt$") and GOOD not in one
    assert passwords.verify_password(GOOD, one) and passwords.verify_password(GOOD, two)
    assert not passwords.verify_password(GOOD + "x", one)
    assert not passwords.verify_password(GOOD, "md5$abc")


def test_both_languages_have_every_text_and_the_browser_language_is_read():
    missing = [key for key, entry in CATALOGUE.items() if not entry.get("en") or not entry.get("zh")]
    assert missing == []
    assert from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8") == "en"
    assert from_accept_language("fr-FR, zh-CN;q=0.5, en;q=0.4") == "zh"
    assert from_accept_language("de", default="en") == "en"


# ---------------------------------------------------------------- on the database

def _setup(factory):
    with transaction(factory) as s:
        add_agent(s, "6001", "Alice", NOW)
        add_agent(s, "6002", "Bob", NOW)
        accounts.create_team(s, "east", NOW)


def test_accounts_roles_and_one_account_per_agent(database):
    factory = sessions(database)
    _setup(factory)
    with transaction(factory) as s:
        alice = accounts.create_account(s, "Alice", "agent", GOOD, NOW, extension="6001", team="east", settings=SETTINGS)
        assert alice.username == "alice" and alice.agent_id is not None
    errors = {
        "an account 'alice' exists already": dict(username="alice", role="qa"),
        "extension 6001 already has an account": dict(username="alice2", role="agent", extension="6001", team="east"),
        "needs the agent's extension": dict(username="carol", role="agent", team="east"),
        "needs a team": dict(username="carol", role="agent", extension="6002"),
        "unknown role": dict(username="carol", role="boss"),
        "no agent with extension 7000": dict(username="carol", role="agent", extension="7000", team="east"),
        "no team 'west'": dict(username="carol", role="agent", extension="6002", team="west"),
    }
    for message, kwargs in errors.items():
        with pytest.raises(accounts.AccountError, match=message):
            with transaction(factory) as s:
                accounts.create_account(s, password=GOOD, now=NOW, settings=SETTINGS, **kwargs)
    with pytest.raises(accounts.WeakPassword) as weak:
        with transaction(factory) as s:
            accounts.create_account(s, "carol", "qa", "Wang19900612!x", NOW, settings=SETTINGS)
    assert weak.value.codes == ["date"]
    with sessions(database)() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 1


def test_lockout_counts_failures_in_the_window_and_unlock_lifts_it(database):
    factory = sessions(database)
    _setup(factory)
    with transaction(factory) as s:
        accounts.create_account(s, "sam", "supervisor", GOOD, NOW, settings=SETTINGS)

    def sign_in(password, at):
        with transaction(factory) as s:
            try:
                return accounts.authenticate(s, "sam", password, at, SETTINGS).username
            except accounts.SignInRefused as refused:
                return refused.reason
    # two failures, then the window passes: the count starts again
    assert [sign_in("bad", NOW), sign_in("bad", NOW + dt.timedelta(minutes=1))] == ["failed", "failed"]
    later = NOW + dt.timedelta(minutes=12)
    assert sign_in("bad", later) == "failed"  # only 2 within 10 minutes of it... the first fell out
    assert sign_in("bad", later + dt.timedelta(seconds=1)) == "failed"
    assert sign_in("bad", later + dt.timedelta(seconds=2)) == "locked"  # 3 within the window
    assert sign_in(GOOD, later + dt.timedelta(minutes=1)) == "locked"  # even the right password
    assert sign_in(GOOD, later + dt.timedelta(minutes=31)) == "sam"  # the lockout lasts 30 minutes
    for _ in range(3):
        sign_in("bad", later + dt.timedelta(minutes=32))
    assert sign_in(GOOD, later + dt.timedelta(minutes=33)) == "locked"
    with transaction(factory) as s:
        accounts.unlock(s, "sam", later + dt.timedelta(minutes=34), by="root")
    assert sign_in(GOOD, later + dt.timedelta(minutes=35)) == "sam"
    with sessions(database)() as s:
        results = s.scalars(select(AuditEntry.result).where(AuditEntry.event == "sign_in").order_by(AuditEntry.id)).all()
    assert results == ["failed"] * 5 + ["locked", "ok"] + ["failed"] * 3 + ["locked", "ok"]
    assert sign_in("whatever", later + dt.timedelta(minutes=36)) == "failed"
    with transaction(factory) as s:  # an unknown name fails like a wrong password; what was typed is not kept
        with pytest.raises(accounts.SignInRefused, match="failed"):
            accounts.authenticate(s, "nobody", GOOD, NOW, SETTINGS)
    with sessions(database)() as s:
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert (last.username, last.result) == ("(unknown)", "failed")


def test_sessions_end_on_disable_idle_expiry_and_reset(database):
    factory = sessions(database)
    _setup(factory)
    with transaction(factory) as s:
        account = accounts.create_account(s, "alice", "agent", GOOD, NOW, extension="6001", team="east",
                                          settings=SETTINGS)
        token, _ = accounts.start_session(s, account, NOW, SETTINGS)
        token2, _ = accounts.start_session(s, account, NOW, SETTINGS)
    with transaction(factory) as s:
        found = accounts.session_for(s, token, NOW + dt.timedelta(minutes=59), SETTINGS)
        assert found is not None and found[1].username == "alice"
        assert accounts.session_for(s, "not-a-token", NOW, SETTINGS) is None
    with transaction(factory) as s:  # idle for an hour after the last request
        assert accounts.session_for(s, token2, NOW + dt.timedelta(hours=1, minutes=1), SETTINGS) is None
    with transaction(factory) as s:
        stored = s.scalars(select(ConsoleSession.token_sha256)).all()
        assert token not in stored and accounts.token_digest(token) in stored
        accounts.disable(s, "alice", NOW + dt.timedelta(minutes=70), by="root")
    with transaction(factory) as s:
        assert accounts.session_for(s, token, NOW + dt.timedelta(minutes=71), SETTINGS) is None
        with pytest.raises(accounts.SignInRefused, match="disabled"):
            accounts.authenticate(s, "alice", GOOD, NOW + dt.timedelta(minutes=72), SETTINGS)
    with transaction(factory) as s:
        accounts.enable(s, "alice", NOW + dt.timedelta(minutes=73))
        account = accounts.authenticate(s, "alice", GOOD, NOW + dt.timedelta(minutes=74), SETTINGS)
        assert not accounts.must_change_password(account, NOW, SETTINGS)
        accounts.reset_password(s, "alice", "Tmp#9rVw!kQz", NOW + dt.timedelta(minutes=75), by="root", settings=SETTINGS)
    with transaction(factory) as s:
        account = accounts.authenticate(s, "alice", "Tmp#9rVw!kQz", NOW + dt.timedelta(minutes=76), SETTINGS)
        assert accounts.must_change_password(account, NOW, SETTINGS)
        with pytest.raises(accounts.WeakPassword) as weak:
            accounts.change_own_password(s, account, "Tmp#9rVw!kQz", "Tmp#9rVw!kQz", NOW, SETTINGS)
        assert weak.value.codes == ["same_as_before"]
        accounts.change_own_password(s, account, "Tmp#9rVw!kQz", "Nw6%hYt!rQa8", NOW, SETTINGS)
        assert not accounts.must_change_password(account, NOW, SETTINGS)


def test_administrators_must_rotate_monthly(database):
    factory = sessions(database)
    with transaction(factory) as s:
        root = accounts.create_account(s, "root", "administrator", "Ad9^fBw!sJq4Lz", NOW, settings=SETTINGS)
        assert not accounts.must_change_password(root, NOW + dt.timedelta(days=29), SETTINGS)
        assert accounts.must_change_password(root, NOW + dt.timedelta(days=30), SETTINGS)


def test_the_audit_log_is_append_only(database):
    factory = sessions(database)
    with transaction(factory) as s:
        accounts.audit(s, NOW, "sign_in", "ok", username="x")
    for statement in ("UPDATE console_audit SET result = 'failed'", "DELETE FROM console_audit"):
        with pytest.raises(Exception, match="append-only"):
            with database.begin() as conn:
                conn.execute(text(statement))
    with sessions(database)() as s:
        assert s.scalars(select(AuditEntry.result)).all() == ["ok"]


def test_campaigns_are_assigned_to_teams(database):
    from campaigns.models import Batch, Campaign, Client
    factory = sessions(database)
    _setup(factory)
    with transaction(factory) as s:
        client = Client(code="B", name="b", created_at=NOW)
        s.add(client)
        s.flush()
        s.add(Batch(client_id=client.id, name="b", file_name="b", sha256="0" * 64, rows=0, imported_at=NOW))
        s.add(Campaign(name="spring", client_id=client.id, status="draft", created_at=NOW, status_changed_at=NOW))
        s.flush()
        accounts.assign_campaign(s, "spring", "east")
        accounts.assign_campaign(s, "spring", "east")  # twice is once
        with pytest.raises(accounts.AccountError, match="no campaign"):
            accounts.assign_campaign(s, "autumn", "east")
    with sessions(database)() as s:
        assert s.scalar(select(func.count()).select_from(CampaignTeam)) == 1
        spring = s.scalar(select(Campaign.id).where(Campaign.name == "spring"))
        east = accounts.team_named(s, "east").id
        assert accounts.team_campaign_ids(s, east) == {spring}
