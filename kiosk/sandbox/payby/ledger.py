"""PayBy sandbox ledger: what :mod:`kiosk.sandbox.payby` keeps in ``state_dir``; wire objects.

``payby.db`` holds merchants (each partner's request key), balances (one wallet row per partner
and currency, in minor units), orders, refunds and notification rows. :class:`Ledger` owns the
connection and its lock, runs the queries and records what it is told: it decides nothing. The
PayBy rules (validation, which code refuses what, the order state machine, signing and
verifying) live in :mod:`kiosk.sandbox.payby`. :func:`load_or_make_key` keeps PayBy's own RSA
pair next to the database (``payby_private_key.pem``, ``payby_public_key.pem``), made on first
start.

The ``wire_*`` helpers build what goes on the wire: reply heads (:data:`MESSAGES` gives each
result code its ``msg``), the ``acquireOrder`` and ``refundOrder`` objects made from rows, and
the hooks' orders and replies; the ``hook_*`` helpers read the hooks' requests (raising
:class:`~kiosk.sandbox.server.HookError`). :func:`canonical_params` gives the text of business
parameters stored with each order and refund, which idempotency checks compare.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Final

from kiosk.errors import MoneyError
from kiosk.money import Money
from kiosk.providers.payby.wire import Signer, dumps, generate_key_pair, loads, money_out
from kiosk.sandbox.kit import HookError

INSUFFICIENT_BALANCE: Final = "62099"  # [INF] not in PayBy's docs: store wallet too low to pay

# The refundOrder failCode/failDes example in PayBy's docs (docs/4_Refund/_refund-order.mdx):
# what a refund made to fail by the fail-next hook carries unless told otherwise.
REFUND_FAIL_CODE: Final = "62002"
REFUND_FAIL_DES: Final = "Failed orders cannot be cancelled or refunded"

MESSAGES: Final = {
    "400": "INVALID_PARAMETER",
    "403": "UNAUTHORIZED",
    "62001": "ORDER_PAID",
    "62002": "ORDER_FAILURE",
    "62003": "ORDER_SETTLED",
    "62004": "MERCHANT_ORDER_NO_NOT_EXIST",
    "62006": "REFUND_AMOUNT_EXCEEDED",
    "62007": "REFUND_MERCHANT_ORDER_NO_NOT_EXIST",
    "62008": "EXPIREDTIME_LESS_THAN_REQUESTTIME",
    "62009": "EXPIREDTIME_TOO_LATER",
    "62012": "PAYSCENECODE_ILLEGAL",
    "62015": "ORDER_NOT_PAID",
    "62016": "MERCHANT_ORDER_NO_EXIST",
    "62017": "REFUND_MERCHANT_ORDER_NO_EXIST",
    "62020": "PAYERMID_PAYEEMID_ARE_SAME",
    "62035": "ORDER_NO_NOT_EXIST",
    "62040": "ACQUIRE_ORDER_REVOKED",
    "62041": "ACQUIRE_ORDER_REFUNDED",
    "62043": "MISSING_BUSINESS_TYPE",
    "62044": "INVALID_BUSINESS_TYPE",
    "62045": "REFUND_REJECTED",
    "62073": "INVALID_ONE_TIME_PAYMENT",
    "62082": "TOKEN_URL_NOT_EXIST",
    "62086": "INVALID_PAYEEMID",
    "78001": "CURRENCY_CODE_NOT_SUPPORTED",
    INSUFFICIENT_BALANCE: "STORE_BALANCE_INSUFFICIENT",
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS merchants (partner_id TEXT PRIMARY KEY, public_key_pem TEXT);
CREATE TABLE IF NOT EXISTS balances (
    partner_id TEXT NOT NULL, currency TEXT NOT NULL, minor INTEGER NOT NULL,
    PRIMARY KEY (partner_id, currency));
CREATE TABLE IF NOT EXISTS orders (
    order_no TEXT PRIMARY KEY, payee_mid TEXT NOT NULL, merchant_order_no TEXT NOT NULL,
    params TEXT NOT NULL, request_time INTEGER NOT NULL, subject TEXT NOT NULL,
    currency TEXT NOT NULL, total_minor INTEGER NOT NULL, pay_scene_params TEXT NOT NULL,
    expired_time INTEGER NOT NULL, notify_url TEXT, device_id TEXT, reserved TEXT,
    token_url TEXT NOT NULL UNIQUE, token_expires INTEGER NOT NULL,
    status TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, fail_code TEXT, fail_des TEXT,
    paid_time INTEGER, payer_mid TEXT, store_payment_no TEXT, pay_device_id TEXT,
    pay_scene_code TEXT NOT NULL DEFAULT 'CASHTOPUP',
    UNIQUE (payee_mid, merchant_order_no), UNIQUE (payer_mid, store_payment_no));
CREATE TABLE IF NOT EXISTS refunds (
    order_no TEXT PRIMARY KEY, partner_id TEXT NOT NULL, refund_merchant_order_no TEXT NOT NULL,
    origin_order_no TEXT NOT NULL, origin_merchant_order_no TEXT NOT NULL, params TEXT NOT NULL,
    currency TEXT NOT NULL, amount_minor INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, operator_name TEXT, device_id TEXT, notify_url TEXT, reserved TEXT,
    created_ms INTEGER NOT NULL, fail_code TEXT, fail_des TEXT,
    UNIQUE (partner_id, refund_merchant_order_no));
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, notify_id TEXT NOT NULL, kind TEXT NOT NULL,
    order_no TEXT NOT NULL, notify_url TEXT, body TEXT NOT NULL, sign TEXT NOT NULL,
    created_ms INTEGER NOT NULL);
"""

# Columns added after the first release: (table, column, declaration), added to older files.
_ADDED_COLUMNS: Final = (
    ("orders", "pay_scene_code", "TEXT NOT NULL DEFAULT 'CASHTOPUP'"),
    ("refunds", "fail_code", "TEXT"),
    ("refunds", "fail_des", "TEXT"),
)

_ORDER_COLUMNS: Final = frozenset(
    {"status", "revoked", "fail_code", "fail_des", "paid_time", "payer_mid",
     "store_payment_no", "pay_device_id"}
)  # fmt: skip

Row = sqlite3.Row


class Ledger:
    """The PayBy sandbox's SQLite ledger; call the query methods inside :meth:`tx`.

    ``lock`` (re-entrant) serialises every use of the connection across server threads.
    ``now_ms`` (the sandbox clock) stamps payments, refunds and notifications; ``sign`` (PayBy's
    signing function) signs each notification body.
    """

    def __init__(self, path: Path, now_ms: Callable[[], int], sign: Callable[[bytes], str]) -> None:
        self._now_ms, self._sign = now_ms, sign
        self.lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # A test double: WAL without an fsync per commit keeps it out of the kiosk's way in
        # benchmarks (a power cut of the test machine may lose its last orders; no matter).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._db:
            self._db.executescript(_SCHEMA)
            for table, column, declaration in _ADDED_COLUMNS:
                names = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in names:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction under the lock: committed on exit, rolled back on an exception."""
        with self.lock, self._db:
            yield

    def _one(self, sql: str, params: tuple[object, ...]) -> Row | None:
        row: Row | None = self._db.execute(sql, params).fetchone()
        return row

    # --- merchants -----------------------------------------------------------------------------

    def merchant_key(self, partner: str) -> str | None:
        """The PEM public key registered for ``partner``, if any."""
        with self.lock:
            row = self._one("SELECT public_key_pem FROM merchants WHERE partner_id = ?", (partner,))
        return None if row is None else row[0]

    def upsert_merchant(self, partner: str, pem: str | None, balance: Money | None) -> None:
        """Add or update a merchant; a ``None`` key keeps the old one, a balance replaces."""
        self._db.execute(
            "INSERT INTO merchants (partner_id, public_key_pem) VALUES (?, ?)"
            " ON CONFLICT (partner_id) DO UPDATE"
            " SET public_key_pem = COALESCE(excluded.public_key_pem, public_key_pem)",
            (partner, pem),
        )
        if balance is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO balances (partner_id, currency, minor) VALUES (?, ?, ?)",
                (partner, balance.code, balance.minor),
            )

    # --- orders --------------------------------------------------------------------------------

    def order(self, order_no: str) -> Row:
        """An order known to exist."""
        row = self.find_order(order_no)
        assert row is not None, order_no
        return row

    def find_order(self, order_no: str) -> Row | None:
        return self._one("SELECT * FROM orders WHERE order_no = ?", (order_no,))

    def orders_of(self, payee: str, prefix: str) -> list[Row]:
        """The payee's orders whose merchantOrderNo starts with ``prefix``, oldest first."""
        rows: list[Row] = self._db.execute(
            "SELECT * FROM orders WHERE payee_mid = ? AND substr(merchant_order_no, 1, ?) = ?"
            " ORDER BY rowid",
            (payee, len(prefix), prefix),
        ).fetchall()
        return rows

    def order_by_merchant_no(self, payee: str, merchant_order_no: str) -> Row | None:
        return self._one(
            "SELECT * FROM orders WHERE payee_mid = ? AND merchant_order_no = ?",
            (payee, merchant_order_no),
        )

    def order_for(self, order_no: str, payee: str, payer: str | None) -> Row | None:
        """The order if ``payee`` is its payee or ``payer`` (when given) its payer."""
        return self._one(
            "SELECT * FROM orders WHERE order_no = ? AND (payee_mid = ? OR payer_mid = ?)",
            (order_no, payee, payer),
        )

    def order_by_token(self, token_url: str) -> Row | None:
        return self._one("SELECT * FROM orders WHERE token_url = ?", (token_url,))

    def order_by_payment(self, payer: str, store_payment_no: str) -> Row | None:
        return self._one(
            "SELECT * FROM orders WHERE payer_mid = ? AND store_payment_no = ?",
            (payer, store_payment_no),
        )

    def insert_order(
        self, *, payee: str, merchant_order_no: str, params: str, request_time: int,
        subject: str, total: Money, pay_scene_params: object, expired_time: int,
        notify_url: str | None, device_id: str | None, reserved: str | None, token_url: str,
        token_expires: int, pay_scene_code: str = "CASHTOPUP",
    ) -> str:  # fmt: skip
        """A new CREATED order; returns its orderNo."""
        order_no = self._new_no("orders", "13")
        self._db.execute(
            "INSERT INTO orders (order_no, payee_mid, merchant_order_no, params, request_time,"
            " subject, currency, total_minor, pay_scene_params, expired_time, notify_url,"
            " device_id, reserved, token_url, token_expires, status, pay_scene_code)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'CREATED', ?)",
            (
                order_no, payee, merchant_order_no, params, request_time, subject, total.code,
                total.minor, dumps(pay_scene_params).decode(), expired_time, notify_url,
                device_id, reserved, token_url, token_expires, pay_scene_code,
            ),
        )  # fmt: skip
        return order_no

    def set_order(self, order_no: str, **values: object) -> None:
        """Update the order's mutable columns (status, revoked, fail_*, payment fields)."""
        assert values.keys() <= _ORDER_COLUMNS
        assignments = ", ".join(f"{column} = ?" for column in values)
        self._db.execute(
            f"UPDATE orders SET {assignments} WHERE order_no = ?",  # noqa: S608 (fixed columns)
            (*values.values(), order_no),
        )

    def pay(self, row: Row, payer: str, payment_no: str | None, device_id: str | None) -> Row:
        """Post ``payer``'s payment of the order to its payee; the order, now PAID_SUCCESS.

        ``payment_no``/``device_id``: the paying store's (None when a customer pays in the app).
        """
        self.move(payer, row["payee_mid"], order_total(row))
        self.set_order(
            row["order_no"],
            status="PAID_SUCCESS",
            paid_time=self._now_ms(),
            payer_mid=payer,
            store_payment_no=payment_no,
            pay_device_id=device_id,
        )
        return self.order(row["order_no"])

    def refunded(self, order_no: str) -> Money:
        """What has been refunded of the order so far (refunds not FAILURE)."""
        row = self.order(order_no)
        (minor,) = self._db.execute(
            "SELECT COALESCE(SUM(amount_minor), 0) FROM refunds"
            " WHERE origin_order_no = ? AND status != 'FAILURE'",
            (order_no,),
        ).fetchone()
        return Money.of(minor, row["currency"])

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, order_no: str) -> Row:
        """A refund known to exist, by its own orderNo."""
        row = self._one("SELECT * FROM refunds WHERE order_no = ?", (order_no,))
        assert row is not None, order_no
        return row

    def refund_by_merchant_no(self, partner: str, refund_no: str) -> Row | None:
        return self._one(
            "SELECT * FROM refunds WHERE partner_id = ? AND refund_merchant_order_no = ?",
            (partner, refund_no),
        )

    def refund_for(self, partner: str, order_no: str) -> Row | None:
        return self._one(
            "SELECT * FROM refunds WHERE partner_id = ? AND order_no = ?", (partner, order_no)
        )

    def add_refund(
        self, origin: Row, partner: str, refund_no: str, amount: Money,
        extra: Mapping[str, str | None], params: str,
        failure: tuple[str, str] | None = None,
    ) -> Row:  # fmt: skip
        """Post a refund of ``origin`` that succeeds at once (CREATED → REFUNDED_SETTLED →
        SUCCESS collapsed): its row (``extra``: the optional columns) and the money from
        ``partner`` back to the payer. The refund row. With ``failure`` (failCode, failDes)
        the refund ends FAILURE at once instead and no money moves."""
        order_no = self._new_no("refunds", "19")
        status = "SUCCESS" if failure is None else "FAILURE"
        fail_code, fail_des = failure if failure is not None else (None, None)
        self._db.execute(
            "INSERT INTO refunds (order_no, partner_id, refund_merchant_order_no, origin_order_no,"
            " origin_merchant_order_no, params, currency, amount_minor, status, reason,"
            " operator_name, device_id, notify_url, reserved, created_ms, fail_code, fail_des)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                order_no, partner, refund_no, origin["order_no"], origin["merchant_order_no"],
                params, amount.code, amount.minor, status, extra.get("reason"),
                extra.get("operator_name"), extra.get("device_id"), extra.get("notify_url"),
                extra.get("reserved"), self._now_ms(), fail_code, fail_des,
            ),
        )  # fmt: skip
        if failure is None:
            self.move(partner, origin["payer_mid"], amount)
        return self.refund(order_no)

    def refund_body(self, refund: Row) -> dict[str, object]:
        """A refund reply: the ``refundOrder`` and what remains refundable of its order."""
        order = self.order(refund["origin_order_no"])
        total = order_total(order)
        remaining = total - self.refunded(order["order_no"])
        return {
            "refundOrder": wire_refund(refund),
            "refundSummary": {
                "acquireAmount": money_out(total),
                "remainRefundAmount": money_out(remaining),
            },
        }

    # --- balances ------------------------------------------------------------------------------

    def balance(self, partner: str, code: str) -> int:
        """The partner's wallet in ``code``, in minor units (0 without a wallet row)."""
        row = self._one(
            "SELECT minor FROM balances WHERE partner_id = ? AND currency = ?", (partner, code)
        )
        return int(row[0]) if row is not None else 0

    def move(self, source: str, target: str, amount: Money) -> None:
        """Debit ``source`` and credit ``target`` (no balance check)."""
        self._credit(source, Money(-amount.minor, amount.currency))
        self._credit(target, amount)

    def _credit(self, partner: str, amount: Money) -> None:
        self._db.execute(
            "INSERT INTO balances (partner_id, currency, minor) VALUES (?, ?, ?)"
            " ON CONFLICT (partner_id, currency) DO UPDATE SET minor = minor + excluded.minor",
            (partner, amount.code, amount.minor),
        )

    def balances(self, partner: str) -> dict[str, Money]:
        """Every wallet of the partner, by currency code."""
        with self.lock:
            rows = self._db.execute(
                "SELECT currency, minor FROM balances WHERE partner_id = ? ORDER BY currency",
                (partner,),
            ).fetchall()
        return {code: Money.of(minor, code) for code, minor in rows}

    # --- notifications -------------------------------------------------------------------------

    def notify(self, kind: str, row: Row, obj: dict[str, object]) -> None:
        """Record the notification PayBy would POST to the row's notifyUrl (§1.8), signed;
        nothing is sent. ``kind``: acquireOrder or refundOrder, ``obj`` that wire object."""
        now = self._now_ms()
        body = dumps({"notify_timestamp": now, "notify_id": secrets.token_hex(16), kind: obj})
        self._db.execute(
            "INSERT INTO notifications (notify_id, kind, order_no, notify_url, body, sign,"
            " created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                secrets.token_hex(8), kind, row["order_no"], row["notify_url"], body.decode(),
                self._sign(body), now,
            ),
        )  # fmt: skip

    def notifications(self) -> list[dict[str, object]]:
        """Every notification row, oldest first, as the hook shows them."""
        with self.lock:
            rows = self._db.execute("SELECT * FROM notifications ORDER BY id").fetchall()
        return [
            {"kind": r["kind"], "orderNo": r["order_no"], "notifyUrl": r["notify_url"],
             "body": r["body"], "sign": r["sign"], "createdMs": r["created_ms"]}
            for r in rows
        ]  # fmt: skip

    def _new_no(self, table: str, prefix: str) -> str:
        """A PayBy-style 18-digit number, unique in ``table`` (orders or refunds)."""
        assert table in ("orders", "refunds")
        while True:
            number = f"{prefix}{secrets.randbelow(10**16):016d}"
            sql = f"SELECT 1 FROM {table} WHERE order_no = ?"  # noqa: S608 (fixed table)
            if self._db.execute(sql, (number,)).fetchone() is None:
                return number


def load_or_make_key(state_dir: Path) -> tuple[bytes, Signer]:
    """PayBy's own pair, made once and kept in ``state_dir`` (private key mode 0600)."""
    private_path = state_dir / "payby_private_key.pem"
    public_path = state_dir / "payby_public_key.pem"
    if not (private_path.exists() and public_path.exists()):
        private_pem, public_pem = generate_key_pair()
        private_path.touch(mode=0o600)
        private_path.chmod(0o600)
        private_path.write_bytes(private_pem)
        public_path.write_bytes(public_pem)
    return public_path.read_bytes(), Signer(private_path.read_bytes())


# --- wire objects ------------------------------------------------------------------------------


def wire_head(apply_status: str, code: str, msg: str) -> dict[str, object]:
    """The ``head`` of every reply (a fresh traceCode each time)."""
    return {
        "applyStatus": apply_status,
        "code": code,
        "msg": msg,
        "traceCode": str(secrets.randbelow(900_000) + 100_000),
        "success": apply_status == "SUCCESS" and code == "0",
    }


def order_total(row: Row) -> Money:
    return Money.of(row["total_minor"], row["currency"])


def canonical_params(biz: Mapping[str, object], *skip: str) -> str:
    """Business parameters (less ``skip``) as stored: same text means the same request."""
    return dumps(_canon({k: v for k, v in biz.items() if k not in skip})).decode()


def _canon(value: object) -> object:
    if isinstance(value, dict):
        return {key: _canon(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_canon(item) for item in value]
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def wire_order(row: Row, *, public: bool = False) -> dict[str, object]:
    """The ``acquireOrder`` object; ``public`` hides the payee's private fields."""
    total = money_out(order_total(row))
    doc: dict[str, object] = {
        "requestTime": row["request_time"],
        "merchantOrderNo": row["merchant_order_no"],
        "orderNo": row["order_no"],
        "status": row["status"],
    }
    if row["paid_time"] is not None:
        zero = money_out(Money.zero(row["currency"]))
        doc["paymentInfo"] = {
            "paidAmount": total,
            "paidTime": row["paid_time"],
            "payerMid": row["payer_mid"],
            "payerFeeAmount": zero,
            "payeeFeeAmount": zero,
            "payChannel": "BALANCE",
            "settlementAmount": total,
        }
    doc.update(
        product="Basic Payment Gateway",
        totalAmount=total,
        payeeMid=row["payee_mid"],
        expiredTime=row["expired_time"],
        subject=row["subject"],
        paySceneCode=row["pay_scene_code"],
        paySceneParams=loads(row["pay_scene_params"]),
    )
    optional = {"failCode": row["fail_code"], "failDes": row["fail_des"]}
    if not public:
        optional.update(
            notifyUrl=row["notify_url"], deviceId=row["device_id"], reserved=row["reserved"]
        )
    doc.update({key: value for key, value in optional.items() if value is not None})
    doc["revoked"] = "true" if row["revoked"] else "false"
    return doc


def wire_view(row: Row, refunded: Money) -> dict[str, object]:
    """Everything about an order, for the hooks (the ``acquireOrder`` and more)."""
    view = wire_order(row)
    view.update(
        tokenUrl=row["token_url"],
        storePaymentNo=row["store_payment_no"],
        payDeviceId=row["pay_device_id"],
        refundedAmount=money_out(refunded),
    )
    return view


def wire_created(placed: Mapping[str, object]) -> dict[str, object]:
    """The hooks' summary of a placeOrder reply (``placed``)."""
    order = placed["acquireOrder"]
    assert isinstance(order, dict)
    params = placed.get("interActionParams")
    return {
        "orderNo": order["orderNo"],
        "merchantOrderNo": order["merchantOrderNo"],
        "tokenUrl": params.get("tokenUrl") if isinstance(params, dict) else None,
        "status": order["status"],
    }


def wire_balances(partner: str, balances: Mapping[str, Money]) -> dict[str, object]:
    """The hooks' view of a partner's wallets (amounts as decimal strings)."""
    shown = {code: money.to_decimal_str() for code, money in balances.items()}
    return {"partnerId": partner, "balances": shown}


def wire_topup_biz(
    merchant_order_no: str, subject: str, amount: Money, business_type: str
) -> dict[str, object]:
    """The bizContent of a CASHTOPUP placeOrder (the hooks' online orders)."""
    return {
        "merchantOrderNo": merchant_order_no,
        "subject": subject,
        "totalAmount": money_out(amount),
        "paySceneCode": "CASHTOPUP",
        "paySceneParams": {"businessType": business_type},
    }


def wire_placed(row: Row) -> dict[str, object]:
    """A placeOrder reply: the order, and its tokenUrl while it is CREATED."""
    body: dict[str, object] = {"acquireOrder": wire_order(row)}
    if row["status"] == "CREATED":
        body["interActionParams"] = {"tokenUrl": row["token_url"]}
    return body


def wire_refund(row: Row) -> dict[str, object]:
    """The ``refundOrder`` object."""
    doc: dict[str, object] = {
        "refundMerchantOrderNo": row["refund_merchant_order_no"],
        "orderNo": row["order_no"],
        "originMerchantOrderNo": row["origin_merchant_order_no"],
        "originOrderNo": row["origin_order_no"],
        "status": row["status"],
        "amount": money_out(Money.of(row["amount_minor"], row["currency"])),
    }
    for key, column in (
        ("reason", "reason"), ("operatorName", "operator_name"), ("deviceId", "device_id"),
        ("notifyUrl", "notify_url"), ("reserved", "reserved"), ("failCode", "fail_code"),
        ("failDes", "fail_des"),
    ):  # fmt: skip
        if row[column] is not None:
            doc[key] = row[column]
    return doc


# --- the hooks' JSON ---------------------------------------------------------------------------


def hook_merchant(doc: Mapping[str, object]) -> tuple[str, bytes | None, Money | None]:
    """``POST merchants``: the partnerId, its PEM public key and its opening balance."""
    partner, pem = doc.get("partnerId"), doc.get("publicKeyPem")
    if not isinstance(partner, str) or not isinstance(pem, str | None):
        raise HookError("expected partnerId and publicKeyPem strings")
    balance = hook_money(doc["balance"]) if doc.get("balance") is not None else None
    return partner, pem.encode() if pem else None, balance


def hook_order(doc: Mapping[str, object]) -> tuple[Money, str, str | None]:
    """``POST orders``: the amount, the subject and the merchantOrderNo (if given)."""
    subject, merchant_order_no = doc.get("subject"), doc.get("merchantOrderNo")
    if not isinstance(subject, str | None) or not isinstance(merchant_order_no, str | None):
        raise HookError("subject and merchantOrderNo must be strings")
    return hook_money(doc), subject or "Game top-up", merchant_order_no


def hook_app_pay(doc: Mapping[str, object]) -> str:
    """``POST orders/<orderNo>/app-pay``: the paying app user's member id."""
    payer = doc.get("payer")
    if not isinstance(payer, str) or not 0 < len(payer) <= 64:
        raise HookError('expected {"payer": "<member id>"}')
    return payer


def hook_fail_next(doc: Mapping[str, object]) -> tuple[str, str, str]:
    """``POST refunds/fail-next``: originOrderNo, failCode and failDes (defaults: the docs')."""
    origin = doc.get("originOrderNo")
    code = doc.get("failCode", REFUND_FAIL_CODE)
    des = doc.get("failDes", REFUND_FAIL_DES if code == REFUND_FAIL_CODE else "")
    if not isinstance(origin, str) or not isinstance(code, str) or not isinstance(des, str):
        raise HookError("expected originOrderNo, failCode and failDes strings")
    if not code or not des:
        raise HookError("failCode and failDes must not be empty")
    return origin, code, des


def hook_money(doc: object) -> Money:
    """``{"currency": "AED", "amount": "150.00"}`` as Money."""
    if not isinstance(doc, dict):
        raise HookError('expected {"currency": "AED", "amount": "150.00"}')
    amount, code = doc.get("amount"), doc.get("currency")
    if (
        not isinstance(amount, str | int | Decimal)
        or isinstance(amount, bool)
        or not isinstance(code, str)
    ):
        raise HookError('expected {"currency": "AED", "amount": "150.00"}')
    try:
        return Money.from_decimal(amount, code)
    except MoneyError as exc:
        raise HookError(str(exc)) from exc
