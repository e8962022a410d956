"""The browser console: agents, the supervisor's wallboard, QA pages (aiohttp).

Modules: ``app`` (make_app, serve, the route table with each route's roles, the security
middleware), ``pages`` (what every handler shares: the app's keys, who is signed in,
rendering, errors, the security headers), the handlers by audience, each with its database
work below them: ``sign_in`` (signing in and out, the language, one's password),
``agent_desk`` (the agent page, presence, disposition, counters, the socket; the case card),
``call_control`` (the call's controls and a supervisor listening in, through Asterisk),
``wallboard`` (the supervisor's wallboard and what it reads), ``qa`` (search, the week's
sample, a recording and its findings, verdicts) and ``playback`` (logged plays, the audio),
``account_admin`` (the administrator's account list); and below them ``accounts``
(accounts, teams, sign-in, lockout, sessions, audit; what ``dunning console accounts``
calls), ``throttle`` (growing sign-in delays per address and per name), ``passwords`` (the
client's password rules, zxcvbn and scrypt, pure), ``cases`` (the case card, who may see it,
presence, the disposition), ``live`` (the one task that pushes presence, the case pop-up and
counters over the agents' WebSockets), ``i18n`` (Chinese and English text), ``schema``
(tables), ``settings``.

Stable element ids for browser tests (``data-testid``; state in ``data-*`` attributes):

- sign-in: ``login-form`` ``login-username`` ``login-password`` ``login-submit``
  ``login-message``; every page: ``who`` ``lang-switch`` ``sign-out`` ``nav-agent``
  ``nav-wallboard`` ``nav-qa`` ``nav-accounts`` ``nav-password`` ``error-message``
  (``data-status``).
- agent: ``agent-state`` (``data-state``: an AgentState value) ``agent-requested``
  (``data-requested``: ready, paused, logged_out) ``btn-ready`` (``data-blocked="true"`` while a
  disposition is owed) ``pause-reason`` ``btn-pause`` ``btn-logout-queue`` ``ready-blocked``
  ``presence-message`` ``wrap-up-left`` ``ws-status`` (``data-connected``) ``counter-dials``
  ``counter-effective`` ``counter-connects`` ``counter-talk``.
- case pop-up: ``case-panel`` (``data-call-id``, ``data-case-id``, ``data-disposed``, ``data-consulting``)
  ``case-waiting`` ``case-debtor`` ``case-reference`` ``case-client`` ``case-amount`` ``case-dpd``
  ``case-due-date`` ``case-id-number`` ``case-status`` ``case-local-time`` ``case-phones`` with
  ``phone-row`` (``data-dialled="true"`` on the number dialled) ``case-promises``
  ``case-appointments`` ``case-history`` ``third-party-warning``; the call's controls:
  ``call-controls`` ``btn-hangup`` ``btn-transfer`` ``btn-wrong-number`` ``btn-invalid-number``
  ``btn-callback`` ``transfer-consult`` (an attended transfer under way) with ``btn-transfer-complete``
  ``btn-transfer-cancel``; ``call-keys`` ``call-message`` (``data-ok``, ``data-action``).
- disposition: ``disposition-panel`` ``disposition-form`` ``dispo-call-id`` ``dispo-code``
  ``dispo-amount`` ``dispo-due`` ``dispo-callback-at`` ``dispo-requested-by``
  ``dispo-callback-note`` ``dispo-note`` ``dispo-submit`` ``dispo-message`` (``data-ok``).
- wallboard: ``wallboard-campaigns`` with ``wall-campaign-row`` (``data-campaign``,
  ``data-status``) ``wall-abandon-rate`` ``wall-connects-hour`` ``wall-progress``
  ``btn-campaign-pause`` ``btn-campaign-resume``; ``wallboard-agents`` with ``wall-agent-row``
  (``data-extension``, ``data-state``); ``wallboard-calls`` with ``wall-call-row``
  (``data-call-id``) with ``btn-listen`` ``btn-whisper`` ``btn-barge`` (supervisors)
  ``wall-listen-message`` (``data-ok``, ``data-mode``); ``wall-updated`` ``wall-message``.
- QA: ``qa-search-form`` ``qa-search-input`` ``qa-search-submit`` ``qa-search-unavailable``
  ``qa-result-count`` ``qa-results`` ``qa-hit`` (``data-recording-id``, ``data-offset``)
  ``qa-hit-link`` ``qa-sample-team`` ``qa-sample`` ``qa-sample-item`` ``qa-sample-unavailable``
  ``qa-recent`` ``qa-recording-link``; the recording page: ``recording-page``
  (``data-recording-id``, ``data-offset``) ``play-reason`` ``btn-play`` ``qa-player``
  ``play-message`` ``findings`` ``finding-row`` (``data-finding-id``,
  ``data-status``) ``finding-status`` ``jump-offset`` (``data-offset``)
  ``btn-verdict-confirmed`` ``btn-verdict-false_positive`` ``verdict-message``; the call:
  ``conversation`` with ``conv-line`` (``data-leg``, ``data-start``, ``data-finding-ids``,
  ``data-severity``) ``conv-time`` ``conv-mark``, or ``no-transcript``.
- QA workspace: ``link-review`` ``link-precision``; the review queue: ``review-filters``
  ``filter-rule`` ``filter-severity`` ``filter-team`` ``filter-status`` ``filter-since``
  ``filter-until`` ``filter-apply`` ``review-count`` ``review-message`` ``review-queue`` with
  ``queue-row`` (``data-finding-id``, ``data-status``, ``data-rule``, ``data-severity``,
  ``data-selected``) ``queue-open`` ``queue-status`` ``queue-verdict-confirmed``
  ``queue-verdict-false_positive``, or ``queue-empty``; precision: ``precision-plot`` with
  ``precision-bar`` (``data-rule``, ``data-precision``) ``precision-table`` with
  ``precision-row`` (``data-rule``, ``data-precision``) ``precision-value``
  ``precision-confirmed`` ``precision-false-positive``.
- case page (supervisors, QA, administrators): ``case-page`` (``data-case-id``)
  ``phones-masked`` ``unmask-form`` ``unmask-reason`` ``btn-unmask``; in its history
  ``history-supervision`` with ``supervision-entry`` (``data-mode``, ``data-by``).
- accounts (administrators): ``accounts`` ``account-row`` (``data-username``, ``data-state``)
  ``locked-until`` ``btn-disable`` ``btn-unlock`` ``lock-events`` with ``lock-event-row``
  (``data-event``: account_locked, lock_lifted, account_unlocked, sign_in_throttled;
  ``data-username``); password: ``password-form`` ``password-current``
  ``password-new`` ``password-repeat`` ``password-submit`` ``password-message``
  ``password-must-change``.
"""
