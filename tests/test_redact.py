"""kiosk.redact.RedactingFilter: the redaction as the log's filter, on a handler."""

from __future__ import annotations

import base64
import io
import logging
import os
import textwrap
from collections.abc import Iterator

import pytest

from kiosk.redact import REDACTION_FAILED, RedactingFilter, literals_of, redact

RESERVATION = "7305918264401937265518302746"  # Paysera, 28 digits
OTP = "123456"
PHONE = "971501234567"
ENVELOPE = f"kiosk:cashin?v=1&provider=rapyd&otp={OTP}&phone=%2B{PHONE}"
FT = "9c1e5b7d3f2a4c6e8a0b1d3f5e7c9a2b"
TOKEN_URL = f"https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft={FT}&t=1732208400000"
CASHII_GROUPED = "4921 7710 3358 0064"
API_KEY = "cak_live_7Hq2Lm9Pz4"  # the secrets file's: only its literal finds it
PEM_BODY = textwrap.wrap(base64.b64encode(os.urandom(1190)).decode(), 64)
PEM = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\n-----END PRIVATE KEY-----\n"
REF = "KSK-0001-000042"
AMOUNT = "AED 150.00"


def secrets() -> list[str]:
    """Every secret above, and the forms a log line could carry them in."""
    return [
        RESERVATION,
        RESERVATION[:4] + " " + RESERVATION[4:8],
        OTP,
        PHONE,
        FT,
        CASHII_GROUPED,
        CASHII_GROUPED.replace(" ", ""),
        API_KEY,
        "BEGIN PRIVATE KEY",
        *PEM_BODY,
    ]


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler (with the filter) writes to a string, as the CLI's does."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(literals_of([API_KEY])))
    logger = logging.getLogger("kiosk.test_redact")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True


def assert_clean(text: str) -> None:
    for secret in secrets():
        assert secret not in text, (secret, text)


def test_codes_otps_token_urls_keys_go_references_and_amounts_stay(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    logger.info("paysera: reservation %s for %s, %s", RESERVATION, REF, AMOUNT)
    logger.info("scanned %r", ENVELOPE)
    logger.info("payby: order %s created (%s): %s", REF, AMOUNT, f'{{"tokenUrl": "{TOKEN_URL}"}}')
    logger.info("payby: customer sent to %s", TOKEN_URL)
    logger.warning("payby: signing with %s", PEM)
    logger.info("cashii: pay code %s for %s %s", CASHII_GROUPED, REF, AMOUNT)
    logger.info("cashii: api_key %s", {"api_key": API_KEY, "ref": REF})
    text = out.getvalue()
    assert_clean(text)
    for mark in ("reservation_code", "otp", "phone", "url", "pem", "code16", "secret"):
        assert f"<redacted:{mark}>" in text, (mark, text)
    assert text.count(REF) == 4 and text.count(AMOUNT) == 3
    assert "payby: customer sent to https://checkout.payby.com/<redacted:url>" in text


def test_the_traceback_and_the_stack_are_redacted(
    log: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = log
    try:
        raise ValueError(f"cashii rejected {CASHII_GROUPED} for {REF}")
    except ValueError:
        logger.exception("cashii: redeem %s failed", REF)
    logger.info("from %s", ENVELOPE, stack_info=True)
    text = out.getvalue()
    assert_clean(text)
    assert "Traceback (most recent call last)" in text and "Stack (most recent call last)" in text
    assert "ValueError: cashii rejected <redacted:code16> for KSK-0001-000042" in text


class Kept(logging.Handler):
    """Keeps the records it is given, as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_record_is_redacted_in_place(log: tuple[logging.Logger, io.StringIO]) -> None:
    """Every handler after the filter, and any formatter, sees only the redacted record: its
    arguments merged into its message, the exception as text only."""
    logger, _ = log
    seen = Kept()
    logger.addHandler(seen)
    try:
        try:
            raise RuntimeError(TOKEN_URL)
        except RuntimeError:
            logger.error("pay page %s", TOKEN_URL, exc_info=True)
    finally:
        logger.removeHandler(seen)
    (record,) = seen.records
    assert record.args is None and record.exc_info is None
    assert isinstance(record.msg, str) and isinstance(record.exc_text, str)
    assert_clean(record.msg + record.exc_text)
    again = logging.makeLogRecord(record.__dict__)
    assert RedactingFilter().filter(again) and again.msg == record.msg  # a second pass: the same


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError(f"no str for {RESERVATION}")


def test_a_record_it_cannot_redact_goes_out_as_redaction_failed(
    log: tuple[logging.Logger, io.StringIO], capsys: pytest.CaptureFixture[str]
) -> None:
    logger, out = log
    logger.info("code %s and %s", CASHII_GROUPED)  # an argument short
    logger.info("otp %d", OTP)  # not a number
    logger.info(Unprintable())
    try:
        raise KeyError(RESERVATION)
    except KeyError:
        logger.exception("phone %s %s", PHONE)
    lines = out.getvalue().splitlines()
    assert lines == [f"INFO kiosk.test_redact: {REDACTION_FAILED}"] * 3 + [
        f"ERROR kiosk.test_redact: {REDACTION_FAILED}"
    ]
    assert capsys.readouterr().err == ""  # no "--- Logging error ---" with the arguments


@pytest.mark.parametrize(
    "line",
    [
        'sandbox: "POST /v1/pos/login/kiosk-sim-pos-0001/639898 HTTP/1.1" 200 -',
        'HTTP Request: POST https://sandboxapi.rapyd.net/v1/pos/login/pos_1/639898 "HTTP/1.1 200"',
        "POST /v1/POS/LOGIN/pos%2D1/639898?x=1",
    ],
)
def test_the_otp_in_a_rapyd_login_path_goes_the_pos_id_stays(line: str) -> None:
    out = redact(line)
    assert "639898" not in out and "<redacted:otp>" in out, out
    assert "pos" in out.lower()
