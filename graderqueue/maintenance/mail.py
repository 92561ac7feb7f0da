"""E-mail to the queue's admins through SMTP (``smtp_*`` settings), and alerts sent once an hour."""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from graderqueue.config import Settings
from graderqueue.errors import QueueError, Unavailable
from graderqueue.store import events
from graderqueue.store.db import Database
from graderqueue.store.models import AlertSent, utcnow


class MailError(QueueError):
    """Cannot send e-mail."""


def build_message(
    settings: Settings, recipients: list[str], subject: str, body: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.mail_from.rpartition("@")[2] or None)
    message.set_content(body)
    return message


def send_mail(settings: Settings, subject: str, body: str, to: list[str] | None = None) -> None:
    """Send one plain-text message; raises :class:`MailError` when the server refuses it."""
    recipients = list(to if to is not None else settings.admin_emails)
    if not recipients:
        return
    message = build_message(settings, recipients, subject, body)
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_sec
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        # The password never appears: smtplib's messages hold the server's answer only.
        raise MailError(
            f"Cannot send e-mail through {settings.smtp_host}:{settings.smtp_port}: {exc}"
        ) from exc


# -- alerts: the same alert at most once per alert_repeat_sec ------------------


def alert_admins(db: Database, settings: Settings, kind: str, subject: str, body: str) -> bool:
    """E-mail an alert unless one of this ``kind`` went out in the last hour.

    Safe on several nodes at once: the right to send is taken in the
    database (``alerts_sent``) before sending, so two cron runs send one
    message. If sending fails the right is given back, so the next run tries
    again instead of staying silent for an hour. Returns True if sent.
    """
    if not settings.admin_emails:
        return False
    now = utcnow()
    try:
        with db.transaction() as session:
            row = session.get(AlertSent, kind, with_for_update=True)
            if row is not None and row.last_sent_at > now - timedelta(
                seconds=settings.alert_repeat_sec
            ):
                return False
            previous = row.last_sent_at if row is not None else None
            if row is None:
                session.add(AlertSent(kind=kind, last_sent_at=now, fingerprint=subject[:255]))
                session.flush()
            else:
                row.last_sent_at = now
                row.fingerprint = subject[:255]
    except (IntegrityError, Unavailable):
        return False  # another node took it at the same moment: it sends
    try:
        send_mail(settings, subject, body)
    except MailError:
        with db.transaction() as session:
            mine = (AlertSent.kind == kind, AlertSent.last_sent_at == now)
            if previous is None:
                session.execute(delete(AlertSent).where(*mine))
            else:
                session.execute(update(AlertSent).where(*mine).values(last_sent_at=previous))
        raise
    with db.transaction() as session:
        events.log_event(session, events.ALERT_SENT, message=f"{kind}: {subject}")
    return True
