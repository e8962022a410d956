"""The generated configuration, as text (pure; no Asterisk needed)."""
import re

import pytest

from asterisk_conf.generate import (AMI_WRITE, CONTEXTS, Agent, ConfigSpec, include_files,
                                    sandbox_files)

SECRET = "s3cret-s3cret-s3cret"


def spec(**kw):
    base = dict(ami_username="dunning", ami_secret=SECRET,
                agents=(Agent("6001", "pw-6001-long-enough"), Agent("6002", "pw-6002-long-enough")))
    base.update(kw)
    return ConfigSpec(**base)


def test_manager_user_is_loopback_only_and_cannot_reload_or_run_commands():
    text = include_files(spec())["dunning-manager.conf"]
    assert "permit = 127.0.0.1/255.255.255.255" in text
    assert "deny = 0.0.0.0/0.0.0.0" in text
    write = re.search(r"^write = (.*)$", text, re.M).group(1).split(",")
    assert "originate" in write
    for dangerous in ("system", "command", "config", "all", "user"):
        assert dangerous not in write
    assert AMI_WRITE == ",".join(write)


def test_sandbox_manager_binds_loopback():
    text = sandbox_files(spec())["manager.conf"]
    assert "bindaddr = 127.0.0.1" in text


def test_one_digest_endpoint_per_agent():
    text = include_files(spec())["dunning-pjsip.conf"]
    assert text.count("type = endpoint") == 2
    assert text.count("auth_type = digest") == 2
    assert "password = pw-6001-long-enough" in text


def test_every_context_the_engine_needs_is_rendered():
    text = include_files(spec())["dunning-extensions.conf"]
    for context in CONTEXTS:
        assert f"[{context}]" in text


def test_answered_calls_are_recorded_with_separate_legs_before_the_agent_is_dialled():
    text = include_files(spec())["dunning-extensions.conf"]
    answered = text.split("[dunning-answered]")[1].split("[dunning-agents]")[0]
    assert answered.index("MixMonitor(") < answered.index("Dial(PJSIP/")
    assert "r(${REC}-debtor.wav)t(${REC}-agent.wav)" in answered
    assert "Playback(dunning/no-agent)" in answered


def test_network_dial_string_is_configurable():
    text = include_files(spec(network="PJSIP/{number}@carrier"))["dunning-extensions.conf"]
    assert "Dial(PJSIP/${EXTEN}@carrier)" in text


def test_secrets_stay_out_of_reprs():
    assert SECRET not in repr(spec())
    assert "pw-6001" not in repr(Agent("6001", "pw-6001-long-enough"))


@pytest.mark.parametrize("bad", [
    dict(ami_secret="short"),
    dict(ami_username="bad name"),
    dict(network="PJSIP/carrier"),
])
def test_bad_settings_are_refused_with_a_reason(bad):
    with pytest.raises(ValueError):
        spec(**bad)


def test_weak_agent_password_refused():
    with pytest.raises(ValueError, match="6001"):
        Agent("6001", "1234")


def test_minimal_module_list_has_no_autoload():
    text = sandbox_files(spec())["modules.conf"]
    assert "autoload = no" in text
    assert "load => app_mixmonitor.so" in text


@pytest.mark.parametrize("number, behaviour", [
    ("2103", "answers after 3 s"), ("2204", "busy after 4 s"), ("2301", "never answers"),
    ("2402", "answers after 2 s, hangs up"), ("2501", "invalid number"),
    ("13800138000", "answers after 3 s"), ("13800138006", "busy after 4 s"),
    ("02112345677", "never answers"), ("12345", "invalid number"), ("1380013800", "invalid number"),
])
def test_simulated_behaviour_of_a_number(number, behaviour):
    from asterisk_conf.generate import simulated_behaviour
    assert simulated_behaviour(number) == behaviour
