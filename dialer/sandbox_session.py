"""Which Asterisk the engine talks to, and a logged-in session with it.

The site says whether the user pointed the engine at their own Asterisk
(DUNNING_AMI_*); otherwise it is the local sandbox, whose AMI credentials live in
the state directory. Everything that opens an AMI session starts here.
"""
from __future__ import annotations

from ami_bridge import AmiConnection, AmiSettings
from asterisk_conf import credentials
from asterisk_conf.site import Site


def ami_settings(site: Site, **overrides: float) -> AmiSettings:
    """AMI settings for the site's Asterisk (its own, or the sandbox's)."""
    if site.external_asterisk:
        username, secret = site.ami_username or credentials.AMI_USERNAME, site.ami_secret
    else:
        creds = credentials.load_or_create(site.home)
        username, secret = creds.ami_username, creds.ami_secret
    assert secret is not None
    return AmiSettings(host=site.ami_host, port=site.ami_port, username=username, secret=secret,
                       **overrides)


async def wait_fully_booted(site: Site, timeout: float = 60.0) -> None:
    """Return once Asterisk's AMI has said FullyBooted (it says so right after a login
    to an Asterisk that has finished booting); AmiNotConnected after `timeout`."""
    conn = AmiConnection(ami_settings(site))
    try:
        await conn.start(wait=False)
        await conn.wait_fully_booted(timeout)
    finally:
        await conn.close()
