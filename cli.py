"""The `dunning` command: a thin click layer over the packages.

Each command reads the site from the environment, calls one function of a
package, and turns the packages' typed errors into a message and an exit code.
"""
from __future__ import annotations

import asyncio
import functools
import sys
from pathlib import Path

import click

from asterisk_conf import credentials, sandbox
from asterisk_conf.generate import include_files
from asterisk_conf.site import Site


def _site() -> Site:
    try:
        return Site.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def user_errors(func):
    """Print the message of an error the user can fix, and exit 1."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from ami_bridge import AmiError
        from asterisk_conf.softphone import SoftphoneError
        try:
            return func(*args, **kwargs)
        except (sandbox.SandboxError, SoftphoneError, AmiError, PermissionError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)
    return wrapper


@click.group()
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


@sandbox_group.command("up")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for FullyBooted.")
@user_errors
def sandbox_up(timeout: float) -> None:
    """Build the sandbox if needed, configure it, start Asterisk, and wait until AMI
    reports FullyBooted. Idempotent: a running sandbox is reused (and reloaded if its
    configuration changed)."""
    site = _site()
    sandbox.require_root()
    creds = credentials.load_or_create(site.home)
    status = sandbox.up(site, creds, say=click.echo, timeout=timeout)
    from dialer.sandbox_session import wait_fully_booted
    asyncio.run(wait_fully_booted(site, timeout))
    click.echo(f"sandbox up: pid {status.pid}, AMI 127.0.0.1:{site.ami_port} FullyBooted, "
               f"SIP 127.0.0.1:{site.sip_port}/udp")


@sandbox_group.command("down")
@user_errors
def sandbox_down() -> None:
    """Stop the sandbox's Asterisk and unmount everything `up` mounted."""
    sandbox.down(_site(), say=click.echo)
    click.echo("sandbox down")


@sandbox_group.command("status")
@user_errors
def sandbox_status() -> None:
    """Say whether the sandbox is built and running, its version and mounts.
    Exit status 0 when running, 3 when not."""
    status = sandbox.status(_site())
    click.echo(f"root:    {status.root} ({'built' if status.built else 'not built'})")
    click.echo(f"running: {'yes, pid %d' % status.pid if status.running else 'no'}")
    if status.version:
        click.echo(f"version: {status.version}")
    click.echo(f"mounts:  {', '.join(status.mounts) or 'none'}")
    sys.exit(0 if status.running else 3)


@sandbox_group.command("cli", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1)
@user_errors
def sandbox_cli(command: tuple[str, ...]) -> None:
    """Run an Asterisk CLI COMMAND in the sandbox (no COMMAND: an interactive console).

    Example: dunning asterisk sandbox cli pjsip show contacts"""
    sys.exit(sandbox.cli(_site(), " ".join(command) or None))


@asterisk.command("config")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the files into (created, mode 0700).")
@user_errors
def asterisk_config(out: Path) -> None:
    """Write the configuration files your own Asterisk #includes: the AMI user
    (dunning-manager.conf), the agents' endpoints (dunning-pjsip.conf) and the
    dialer's contexts (dunning-extensions.conf). The files hold secrets: mode 0600."""
    site = _site()
    creds = credentials.load_or_create(site.home)
    spec = sandbox.config_spec(site, creds)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, text in include_files(spec).items():
        credentials.write_private(out / name, text)
        click.echo(f"wrote {out / name}")
    click.echo("add to manager.conf:    #include dunning-manager.conf\n"
               "add to pjsip.conf:      #include dunning-pjsip.conf\n"
               "add to extensions.conf: #include dunning-extensions.conf\n"
               "then `dunning asterisk check` with DUNNING_AMI_* pointing at it")


@asterisk.command("check")
@click.option("--timeout", default=10.0, show_default=True)
@user_errors
def asterisk_check(timeout: float) -> None:
    """Tell whether the running Asterisk (the sandbox, or DUNNING_AMI_*) has what the
    engine needs: AMI login and permissions, the applications, the dialplan contexts,
    the agents' endpoints. Exit status 0 when everything is there, 1 otherwise."""
    from dialer.sandbox_session import ami_settings
    from asterisk_conf.check import run_check
    site = _site()
    agents = sorted(credentials.load_or_create(site.home).agent_passwords)
    results = asyncio.run(run_check(ami_settings(site), agents, timeout=timeout))
    for item in results:
        mark = click.style("ok  ", fg="green") if item.ok else click.style("MISSING", fg="red")
        click.echo(f"{mark} {item.what}" + (f": {item.detail}" if item.detail else ""))
    sys.exit(0 if all(item.ok for item in results) else 1)


@main.command("demo")
@click.option("--agents", default=2, show_default=True, help="Softphone agents (1-3).")
@click.option("--numbers", default="2103,2204,2301,2402,2501,13800138000",
              show_default=True, help="Simulated debtors to dial, comma-separated.")
@click.option("--say", "says", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="WAV file the softphone agents say (default: a generated greeting).")
@user_errors
def demo(agents: int, numbers: str, says: Path | None) -> None:
    """The main job (for now): bring up the sandbox, register softphone agents, dial
    simulated debtors, bridge each answered call to a free agent, and print each
    call's progress, outcome and recording."""
    from dialer.demo import run_demo
    site = _site()
    sandbox.require_root()
    creds = credentials.load_or_create(site.home)
    targets = [n.strip() for n in numbers.split(",") if n.strip()]
    bad = [n for n in targets if not n.isdigit()]
    if bad or not targets:
        raise click.BadParameter(f"digits only, comma-separated; not a number: {', '.join(bad) or '(none given)'}",
                                 param_hint="--numbers")
    if says is not None:
        _require_call_audio(says)
    if not 1 <= agents <= len(creds.agent_passwords):
        raise click.BadParameter(f"between 1 and {len(creds.agent_passwords)}", param_hint="--agents")
    sandbox.up(site, creds, say=click.echo)
    ok = asyncio.run(run_demo(site, creds, targets, agents, says, echo=click.echo))
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


if __name__ == "__main__":
    main()
