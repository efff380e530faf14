"""The payload router: every kind of code, through each provider's own recogniser, and clean
refusals of everything else (issue 16: hostile input, one test per finding)."""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiosk.errors import PayloadError
from kiosk.money import Money
from kiosk.providers.cashii.codes import CashiiCashOut
from kiosk.providers.payby.codes import PayByCashOut, PayByTopUp
from kiosk.providers.payby.codes import recognise as payby_recognise
from kiosk.providers.payby.config import PayByConfig
from kiosk.providers.paysera.codes import PayseraCashIn, PayseraCashOut
from kiosk.providers.paysera.codes import recognise as paysera_recognise
from kiosk.providers.rapyd.codes import RapydCashIn, RapydCashOut
from kiosk.router import MAX_FIELD, MAX_FIELDS, MAX_PAYLOAD, kind_of, route, route_bytes

CONFIGS = {"payby": PayByConfig(token_hosts=("checkout.payby.com",))}
TOKEN = "https://checkout.payby.com/pay-page/main?BIZ_TYPE=202&ft=9f8e7d&t=1700000000000"
RESERVATION = "0155567464130298871198969060"
EVP = "EVP000000014471"
OTP, PHONE = "876680", "+14155559992"
PAYSERA = f"kiosk:cashout?v=1&provider=paysera&code={RESERVATION}"
RAPYD = f"kiosk:cashout?v=1&provider=rapyd&otp={OTP}&phone={quote(PHONE, safe='')}"
SECRETS = (RESERVATION, "ft=9f8e7d", OTP, PHONE[1:])

# The zero of each script whose digits str.isdigit(), int(), Decimal() and \d all take.
ZEROS = {
    "Arabic-Indic": 0x0660,
    "Extended Arabic-Indic": 0x06F0,
    "Devanagari": 0x0966,
    "Bengali": 0x09E6,
    "Thai": 0x0E50,
    "full-width": 0xFF10,
    "mathematical bold": 0x1D7CE,
}


def digits(text: str, zero: int) -> str:
    """``text`` with its ASCII digits written in the script whose zero is ``zero``."""
    return "".join(chr(zero + int(c)) if "0" <= c <= "9" else c for c in text)


def refused(text: str, why: str) -> PayloadError:
    """Refused with ``why`` in the message, never echoing a secret; kind ``unknown``."""
    with pytest.raises(PayloadError, match=why) as err:
        route(text, configs=CONFIGS)
    for secret in SECRETS:
        if secret in text:
            assert secret not in str(err.value)
    assert kind_of(text, configs=CONFIGS) == "unknown"
    return err.value


def test_every_kind() -> None:
    assert route(TOKEN, configs=CONFIGS) == PayByTopUp(TOKEN)
    assert route(RESERVATION) == PayseraCashOut(RESERVATION)
    assert route(EVP) == PayseraCashIn(14471)
    env = route(f"{PAYSERA}&amount=50.00&currency=EUR")
    assert env == PayseraCashOut(RESERVATION, Money.of(5000, "EUR"))
    assert route(PAYSERA) == PayseraCashOut(RESERVATION, None)  # the customer picks a preset
    assert route(f"{RAPYD}&amount=10.00&currency=AED") == RapydCashOut(
        OTP, PHONE, Money.of(1000, "AED")
    )
    assert route("kiosk:cashin?v=1&provider=rapyd") == RapydCashIn()
    assert route(RAPYD.replace("cashout", "cashin")) == RapydCashIn(OTP, PHONE)
    cashii = route("kiosk:cashout?v=1&provider=cashii&amount=100.00&currency=AED")
    assert cashii == CashiiCashOut(Money.of(10000, "AED"))
    payby = route("kiosk:cashout?v=1&provider=payby&amount=0.00000001&currency=BUSD")
    assert payby == PayByCashOut(Money.of(1, "BUSD"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("evp000000014471", PayseraCashIn(14471)),  # EVP in either case
        (f"KIOSK:CASHOUT?v=1&provider=PAYSERA&code={RESERVATION}", PayseraCashOut(RESERVATION)),
        (f"kiosk:cashout?provider=paysera&code={RESERVATION}&v=1", PayseraCashOut(RESERVATION)),
        (RAPYD.replace("%2B", "%2b"), RapydCashOut(OTP, PHONE)),
        (
            "kiosk:cashout?v=1&provider=payby&amount=5&currency=AED",
            PayByCashOut(Money.of(500, "AED")),
        ),
        (
            "kiosk:cashout?v=1&provider=payby&amount=0.5&currency=AED",
            PayByCashOut(Money.of(50, "AED")),
        ),
        (
            "kiosk:cashout?v=1&provider=payby&amount=999999999999.99&currency=AED",
            PayByCashOut(Money.of(99999999999999, "AED")),  # 12 digits: the envelope's most
        ),
        (TOKEN.replace("checkout.payby.com", "checkout.payby.com:443"), None),
        (TOKEN.replace("checkout.payby.com", "CHECKOUT.PayBy.com"), None),
    ],
)
def test_equivalent_forms(text: str, expected: object) -> None:
    got = route(text, configs=CONFIGS)
    assert got == (expected if expected is not None else PayByTopUp(text))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"kiosk:cashin?v=1&provider=paysera&code={RESERVATION}", "cash-in: EVP code"),
        ("kiosk:cashin?v=1&provider=paysera&amount=5.00&currency=EUR", "carries no amount"),
        ("kiosk:cashin?v=1&provider=rapyd&currency=EUR", "carries no amount"),
        ("kiosk:refund?v=1&provider=paysera", "one of cashout, cashin"),
        (f"{PAYSERA}&currency=EUR", "amount and its currency come together"),
        (f"{PAYSERA}&amount=5", "amount and its currency come together"),
    ],
)
def test_envelope_actions(text: str, why: str) -> None:
    refused(text, why)


def test_a_payby_link_is_known_without_a_payby_table_by_the_default_hosts() -> None:
    assert route(TOKEN).kind == "payby_tokenurl"  # refused later: PayBy is not configured
    with pytest.raises(PayloadError, match="not an accepted provider host"):
        route(TOKEN, configs={"payby": PayByConfig(token_hosts=("other.example",))})


def test_secrets_stay_out_of_repr() -> None:
    for request in (
        route(TOKEN, configs=CONFIGS),
        route(RESERVATION),
        route(f"{PAYSERA}&amount=5&currency=EUR"),
        route(RAPYD),
    ):
        for secret in SECRETS:
            assert secret not in repr(request)


# Finding 1: \d, isdigit() and int() take any script's digits. -----------------------------


@pytest.mark.parametrize("zero", ZEROS.values(), ids=ZEROS.keys())
@pytest.mark.parametrize(
    "code",
    [EVP, RESERVATION, f"{PAYSERA}&amount=50.00&currency=EUR", RAPYD],
    ids=["EVP", "reservation", "paysera envelope", "rapyd envelope"],
)
def test_digits_of_other_scripts_are_refused(zero: int, code: str) -> None:
    """``EVP`` and Arabic-Indic or full-width digits was a Paysera cash-in code, and 28
    Arabic-Indic digits a reservation code."""
    whole = digits(code, zero)
    refused(whole, "outside ASCII")
    last = max(i for i, c in enumerate(code) if "0" <= c <= "9")
    one = code[:last] + digits(code[last], zero) + code[last + 1 :]  # one digit is enough
    refused(one, "outside ASCII")
    # each recogniser alone refuses them too (ASCII patterns, not only the router's check)
    for text in (whole, one):
        with contextlib.suppress(PayloadError):
            assert paysera_recognise(text, None) is None


@pytest.mark.parametrize("zero", ZEROS.values(), ids=ZEROS.keys())
def test_percent_encoded_digits_of_other_scripts_are_refused(zero: int) -> None:
    """Written as ``%D9%A5`` the envelope is ASCII: its decoded fields are checked too."""
    for field, value in (("code", RESERVATION), ("otp", OTP), ("amount", "50")):
        other = quote(digits(value[0], zero), safe="") + value[1:]  # one digit is enough
        if field == "code":
            text = f"kiosk:cashout?v=1&provider=paysera&code={other}"
        elif field == "otp":
            text = RAPYD.replace(f"otp={OTP}", f"otp={other}")
        else:
            text = f"{PAYSERA}&amount={other}&currency=EUR"
        refused(text, "characters outside ASCII")
    refused("kiosk:cashout?v=" + quote(digits("1", zero)) + "&provider=cashii", "outside ASCII")


# Finding 2: https://evil.example.com\@checkout.payby.com/x was a tokenUrl on the allowed host.


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://evil.example.com\\@checkout.payby.com/x", "backslash"),
        ("https://checkout.payby.com\\.evil.example/x", "backslash"),
        ("https://checkout.payby.com/pay-page\\main?ft=1", "backslash"),
        ("https://evil.example.com%5C@checkout.payby.com/x", "user info"),
        ("https://user@checkout.payby.com/x", "user info"),
        ("https://user:pw@checkout.payby.com/x", "user info"),
        ("https://@checkout.payby.com/x", "user info"),
        ("https://checkout.payby.com@evil.example/x", "user info"),
        ("https://checkout%2Epayby.com/x", "percent-encoded"),
        ("https://checkout.payby.com%00.evil.example/x", "percent-encoded"),
        ("https://checkout.payby.com./x", "not a plain host name"),
        ("https://checkout.payby.com../x", "not a plain host name"),
        ("https://.checkout.payby.com/x", "not a plain host name"),
        ("https:///checkout.payby.com/x", "not a plain host name"),
        ("https://[::1]/x", "not a plain host name"),
        ("https://[abc/x", "not a plain host name"),  # urlsplit raised ValueError here
        ("https://checkout.payby.com]/x", "not a plain host name"),
        ("https://checkout.payby.com:8443/x", "port other than 443"),
        ("https://checkout.payby.com:/x", "port other than 443"),
        ("https://checkout.payby.com:0443/x", "port other than 443"),
        ("https://checkout.payby.com:443:443/x", "port other than 443"),
        ("https://checkout.payby.com:99999/x", "port other than 443"),
        ("https://checkout.payby.com.evil.example/x", "not an accepted provider host"),
        ("https://evil.example/checkout.payby.com/x", "not an accepted provider host"),
        ("https://xcheckout.payby.com/x", "not an accepted provider host"),
        ("https://evil.example/pay-page/main?ft=1", "not an accepted provider host"),
        ("http://checkout.payby.com/pay-page/main?ft=1", "not https"),
        ("HTTP://checkout.payby.com/x", "not https"),
        ("https://checkout.payby.com/x y", "spaces"),
        ("https://checkout.payby.com/" + "a" * 1100, "longer than 1024"),
        ("https://" + "a" * 250 + ".example/x", "not a plain host name"),  # DNS: 253 at most
        ("https://" + "a." * 40 + "example/x", "link host is not an accepted"),  # not named
        ("https://checkout.payby.com\u3002/x", "outside ASCII"),  # an ideographic full stop
        ("https://checkout.p\u0430yby.com/x", "outside ASCII"),  # a Cyrillic a
    ],
)
def test_links_are_parsed_strictly(text: str, why: str) -> None:
    err = refused(text, why)
    assert "/x" not in str(err) and "ft=" not in str(err)  # the link's path and query: never
    if "evil" in str(err):  # a foreign host is named once it is a plain host name
        assert why == "not an accepted provider host"
    if text.isascii() and " " not in text:
        with pytest.raises(PayloadError, match=why):
            payby_recognise(text, CONFIGS["payby"])  # the recogniser alone, too


def test_allowed_hosts_are_compared_exactly() -> None:
    cfg = PayByConfig(token_hosts=("Checkout.PayBy.com",))  # written in any case
    assert payby_recognise(TOKEN, cfg) == PayByTopUp(TOKEN)
    with pytest.raises(PayloadError, match="not an accepted"):
        payby_recognise(TOKEN, PayByConfig(token_hosts=("payby.com",)))  # no suffix match
    assert payby_recognise("kiosk:cashout?v=1", cfg) is None  # not a link: not PayBy's


# Finding 3: trailing spaces were accepted. ------------------------------------------------


@pytest.mark.parametrize("code", [RESERVATION, EVP, TOKEN, PAYSERA, RAPYD])
@pytest.mark.parametrize(
    ("pad", "why"),
    [
        (" ", "leading or trailing spaces"),
        ("  ", "leading or trailing spaces"),
        ("\t", "control characters"),
        ("\r\n", "control characters"),
        ("\n", "control characters"),
        ("\x00", "control characters"),
        ("\x7f", "control characters"),
        ("\u00a0", "outside ASCII"),  # no-break space
        ("\u2003", "outside ASCII"),  # em space
        ("\u3000", "outside ASCII"),  # ideographic space
        ("\u200b", "outside ASCII"),  # zero-width space
        ("\ufeff", "outside ASCII"),  # byte order mark
        ("\u2028", "outside ASCII"),  # line separator
    ],
)
def test_whitespace_and_control_characters_around_a_code_are_refused(
    code: str, pad: str, why: str
) -> None:
    refused(code + pad, why)
    refused(pad + code, why)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (RESERVATION[:10] + " " + RESERVATION[10:], "not a code this kiosk knows"),
        ("EVP 000000014471", "EVP and 12 digits"),
        (PAYSERA.replace("provider=", "provider= "), "malformed query"),
        (PAYSERA.replace("code=", "code=%20"), "spaces"),
        (PAYSERA + "%0A", "control characters"),
        (PAYSERA + "%00", "control characters"),
        (RAPYD.replace("%2B", "+"), "written %2B"),  # a form would read it as a space
    ],
)
def test_spaces_inside_a_code_are_refused(text: str, why: str) -> None:
    refused(text, why)


# Finding 4: an amount of 1 and sixty zeros was accepted. ----------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "why"),
    [
        ("1" + "0" * 60, "EUR", "at most 12 digits"),
        ("1" + "0" * 12, "EUR", "at most 12 digits"),
        ("1" + "0" * 12 + ".00", "EUR", "at most 12 digits"),
        ("1e3", "EUR", "no sign, exponent"),
        ("1E3", "EUR", "no sign, exponent"),
        ("Infinity", "EUR", "no sign, exponent"),
        ("NaN", "EUR", "no sign, exponent"),
        ("-5", "EUR", "no sign, exponent"),
        ("%2B5", "EUR", "no sign, exponent"),  # a leading +
        ("+5", "EUR", "written %2B"),
        ("0005", "EUR", "leading zero"),
        ("05.00", "EUR", "leading zero"),
        ("5.", "EUR", "at most 12 digits"),
        (".5", "EUR", "at most 12 digits"),
        ("5,00", "EUR", "malformed query"),
        ("1_000", "EUR", "at most 12 digits"),
        ("0x10", "EUR", "at most 12 digits"),
        ("", "EUR", "at most 12 digits"),
        ("1.005", "EUR", "at most 2 decimals"),
        ("5.000", "EUR", "at most 2 decimals"),  # even zeros: the currency's decimals at most
        ("0.000000001", "BUSD", "at most 8 decimals"),
        ("0", "EUR", "positive"),
        ("0.00", "EUR", "positive"),
        ("5", "XXX", "currency must be one of"),
        ("5", "eur", "currency must be one of"),
        ("5", "", "currency must be one of"),
        ("5", "%26code%3D" + RESERVATION, "currency must be one of"),  # never echoed
    ],
)
def test_envelope_amounts_are_plain_ascii_decimals(amount: str, currency: str, why: str) -> None:
    refused(f"{PAYSERA}&amount={amount}&currency={currency}", why)


# The envelope's other rules. --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"{PAYSERA}&amount=5&currency=EUR&currency=AED",
        f"{PAYSERA}&amount=5&amount=9000&currency=EUR",
        f"{PAYSERA}&code={RESERVATION}",
        f"kiosk:cashout?v=1&v=1&provider=paysera&code={RESERVATION}",
        f"kiosk:cashout?v=1&provider=cashii&provider=paysera&code={RESERVATION}",
        RAPYD + "&otp=111111",
        "kiosk:cashout?v=1&provider=cashii&v=2",
    ],
)
def test_duplicate_fields_are_refused(text: str) -> None:
    refused(text, "appears twice")


@pytest.mark.parametrize("version", ["2", "0", "01", "1.0", "", "%32", "v1", "one"])
def test_unknown_versions_are_refused(version: str) -> None:
    refused(f"kiosk:cashout?v={version}&provider=paysera&code={RESERVATION}", "version must be 1")
    refused(f"kiosk:cashout?provider=paysera&code={RESERVATION}", "version must be 1")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"{PAYSERA}&note=hello", "no field but the code"),
        (f"{RAPYD}&note=hello", "no field but the OTP and phone"),
        ("kiosk:cashout?v=1&provider=cashii&code=1", "no other field"),
        ("kiosk:cashout?v=1&provider=payby&code=1&amount=1&currency=AED", "no other field"),
        (f"{PAYSERA}&x=" + "a" * (MAX_FIELD + 1), "longer than 256"),
        (PAYSERA + "".join(f"&f{i}=1" for i in range(MAX_FIELDS)), "more than 16 fields"),
        (f"{PAYSERA}&Code=1", "malformed query"),
        (f"{PAYSERA}&=1", "malformed query"),
        (f"{PAYSERA}&code", "malformed query"),
        (f"{PAYSERA}&", "malformed query"),
        ("kiosk:cashout?v=1&&&provider", "malformed"),
        (f"{PAYSERA}&amount=5;currency=EUR", "malformed query"),
        (f"{PAYSERA}&x=%", "malformed query"),
        (f"{PAYSERA}&x=%zz", "malformed query"),
        (f"{PAYSERA}&x=%ff", "not UTF-8"),
        (f"{PAYSERA}#fragment", "malformed"),
        (f"kiosk://cashout?v=1&provider=paysera&code={RESERVATION}", "malformed"),
        (f"kiosk:/cashout/?v=1&provider=paysera&code={RESERVATION}", "malformed"),
        ("kiosk:cashout", "malformed"),
        ("kiosk:", "malformed"),
        ("kiosk:cashout?v=1&provider=nobody&amount=1&currency=AED", "provider must be"),
        ("kiosk:cashout?v=1&provider=paysera&code=123&amount=5&currency=EUR", "28 digits"),
        ("kiosk:cashout?v=1&provider=rapyd&otp=12&phone=%2B14155559992", "OTP is 4 to 10"),
        ("kiosk:cashout?v=1&provider=rapyd&otp=1234&phone=14155559992", "phone number"),
    ],
)
def test_envelope_fields_are_checked(text: str, why: str) -> None:
    refused(text, why)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0155567464130298871198969", "a Paysera reservation code has 28"),
        ("01555674641302988711989690601", "a Paysera reservation code has 28"),
        ("EVP00000001447", "EVP and 12 digits"),
        ("EVP0000000144711", "EVP and 12 digits"),
        ("EVP000000000000", "EVP and 12 digits"),
        ("EVPabcdefghijkl", "EVP and 12 digits"),
        ("hello world", "not a code this kiosk knows"),
        ("", "holds nothing"),
        ("abc\x07def", "control characters"),
        ("line1\nline2", "control characters"),
        ("A" * (MAX_PAYLOAD + 1), "too long"),
        ("kiosk:cashout?v=1&provider=paysera&x=" + "1" * MAX_PAYLOAD, "too long"),
    ],
)
def test_refusals_are_clean_and_never_echo_the_code(text: str, why: str) -> None:
    refused(text, why)


def test_the_whole_payload_is_limited() -> None:
    longest = RESERVATION + "0" * (MAX_PAYLOAD - len(RESERVATION))
    refused(longest, f"{MAX_PAYLOAD} digits: a Paysera reservation code has 28")  # read
    refused(longest + "0", "too long")  # not even read


def test_non_utf8_and_oversized_bytes_are_refused() -> None:
    with pytest.raises(PayloadError, match="not UTF-8"):
        route_bytes(b"\xff\xfe\x00EVP")
    with pytest.raises(PayloadError, match="too long"):
        route_bytes(b"1" * 5000)
    with pytest.raises(PayloadError, match="outside ASCII"):
        route_bytes(digits(EVP, 0x0660).encode())
    assert route_bytes(EVP.encode()) == PayseraCashIn(14471)


def test_a_used_code_is_refused() -> None:
    used = {RESERVATION}
    with pytest.raises(PayloadError, match="already used") as err:
        route(RESERVATION, seen=used.__contains__)
    assert RESERVATION not in str(err.value)
    assert route(EVP, seen=used.__contains__).kind == "paysera_cashin"


@given(st.text(max_size=300))
def test_any_text_is_a_request_or_a_clean_refusal(text: str) -> None:
    with contextlib.suppress(PayloadError):
        route(text, configs=CONFIGS)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_a_clean_refusal(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        route_bytes(data, configs=CONFIGS)
