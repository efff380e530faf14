"""Paysera's MAC: every published vector (providers.md §2.8, 1-4), byte for byte."""

from __future__ import annotations

import pytest

from kiosk.providers.paysera.mac import MacSigner, body_ext, parse_header, verify

CLIENT, KEY = "wkVd93h2uS", "IrdTc8uQodU7PRpLzzLTW6wqZAO6tAMU"
NONCE = "nQnNaSNyubfPErjRO55yaaEYo9YZfKHN"
SIGNER = MacSigner(CLIENT, KEY)


def _mac(header: str) -> str:
    return parse_header(header).mac


@pytest.mark.parametrize(
    ("method", "url", "ts", "expected"),
    [
        (  # 1: /guides/wallet/authentication
            "GET",
            "https://wallet.paysera.com/rest/v1/payment/10145",
            1343811600,
            "/qxTA8FOgT0Dd0MHh9k/sUQ3Q38ckx8+S0PBxpIuttY=",
        ),
        (  # 3: /guides/transfer/examples
            "GET",
            "https://wallet.paysera.com/transfer/rest/v1/transfers/10145",
            1343811600,
            "Bp22nWw9qFsz7ux5xOYkCIYJjXAz8mhxTSfJsoOKV3A=",
        ),
        (  # 4: the SDK's MacTest, a GET
            "GET",
            "https://wallet.paysera.com/wallet/rest/v1/payment/10145",
            1343818800,
            "d1OlqI77u2P1IVYIv2ppL3hnrBhyaQ+gDqYMxCH+0e0=",
        ),
    ],
)
def test_published_get_vectors(method: str, url: str, ts: int, expected: str) -> None:
    assert _mac(SIGNER.authorization(method, url, ts=ts, nonce=NONCE)) == expected


def test_the_sdk_post_vector_with_its_body_hash_and_header() -> None:
    body = (
        b"grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA"
        b"&redirect_uri=http%3A%2F%2Flocalhost%2Fabc"
    )
    assert body_ext(body) == "body_hash=IftzxAtYliLQx46c2JAPidlHKqck0OXD7KmsHNnSptU%3D"
    got = SIGNER.authorization(
        "POST", "https://wallet.paysera.com/wallet/oauth/v1/", body, ts=1343818800, nonce=NONCE
    )
    assert got == (
        f'MAC id="{CLIENT}", ts="1343818800", nonce="{NONCE}",'
        ' mac="YEIWoGDeREjJNh+IplpTcCLRNASTAMgFqa540igFcaY=",'
        ' ext="body_hash=IftzxAtYliLQx46c2JAPidlHKqck0OXD7KmsHNnSptU%3D"'
    )


def test_the_legacy_cash_out_vector_given_its_ext() -> None:
    # Vector 2: the page's body is illustrative only (it does not hash to its body_hash), so
    # the MAC is checked from the published ext.
    from kiosk.providers.paysera.mac import mac, normalized

    ext = "body_hash=IVDvIGlLKavxtPIloqFNlAspEt1YlRL2VEGmcNjLPKg%3D"
    text = normalized(
        1343811600, NONCE, "POST", "/rest/v1/transaction", "wallet.paysera.com", 443, ext
    )
    assert mac(KEY, text) == "VEXxazEcDiEls7djj12ngBiMBv3JzwJOn8+Eqd9NUx8="


def test_verify_refuses_a_changed_body_key_or_ts() -> None:
    body = b'{"payments":[]}'
    h = parse_header(
        SIGNER.authorization("POST", "http://127.0.0.1:8700/rest/v1/transaction", body)
    )
    args = ("POST", "/rest/v1/transaction", "127.0.0.1", 8700)
    assert verify(KEY, h, *args, body)
    assert not verify(KEY, h, *args, body + b" ")
    assert not verify("x" * 32, h, *args, body)
    assert not verify(
        KEY, parse_header(SIGNER.authorization("GET", "https://h/x", ts=1)), *args, b""
    )


@pytest.mark.parametrize(
    "bad", ["Bearer x", 'MAC id="a"', 'MAC id="a", ts="x", nonce="n", mac="m"']
)
def test_a_broken_header_is_refused_cleanly(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_header(bad)


def test_a_nonce_with_a_quote_is_refused() -> None:
    with pytest.raises(ValueError):
        SIGNER.authorization("GET", "https://h/x", nonce='a"b')
