"""From response bytes to a typed result or a typed error. Pure: no I/O, no clock.

The fast path is one msgspec decode straight into the Struct, checked by a function
compiled per Struct type (every amount finite? every open enum known? no raw companion
set?), plus a counter of unknown enum values for nested types. Thousands separators in
amounts (Binance's documented example has one) are found before decoding by one regex scan
for a comma followed by a digit, which in the same C call recognises the usual case, the
one separator of a value (``"122,559.9"``): that comma is deleted from a copy of the bytes,
and other values in strict groups of three are stripped by a general step; still one
decode. Other amount quirks (``""``) are patched after msgspec names the field, and decoded
again. Only when that fails or finds something to explain does the slow path run: decode
to plain Python objects, normalise the quirks, convert, and name the offending field if it
still fails.
"""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Generic, TypeVar, get_args, get_origin

import msgspec

from .errors import DecodeError, error_for, excerpt
from .models import UNKNOWN_VALUES_SEEN, AccountInfo

__all__ = ["ResponseDecoder", "decode_account_info", "raise_for_error"]

T = TypeVar("T")

_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_PATH_RE = re.compile(r"at `(\$[^`]*)`")
_MISSING_RE = re.compile(r"missing required field `([^`]+)`")


class _ErrorBody(msgspec.Struct):
    code: int
    msg: str = ""


_error_decoder = msgspec.json.Decoder(_ErrorBody)
# The slow path decodes to plain objects first: JSON numbers with a fraction or exponent must
# become Decimals there, as in the fast path, never floats that lose digits.
_plain_decoder = msgspec.json.Decoder(float_hook=Decimal)


# --- shape of a target type: which attributes need checking or normalising -------------


class _Shape:
    """What the check and the normaliser need to know about one Struct type."""

    __slots__ = ("amounts", "enums", "get_amounts", "nested", "wire_fields")

    def __init__(self, struct: type[msgspec.Struct]) -> None:
        info = msgspec.inspect.type_info(struct)
        assert isinstance(info, msgspec.inspect.StructType)
        encode_names = {f.name: f.encode_name for f in info.fields}
        self.amounts: tuple[str, ...] = ()
        self.enums: tuple[tuple[str, Any], ...] = ()
        self.nested: tuple[tuple[str, type[msgspec.Struct]], ...] = ()
        # wire name -> (kind, extra): kind is "amount", "enum", "struct", "list"
        self.wire_fields: dict[str, tuple[str, Any]] = {}
        for f in info.fields:
            kind, extra = _classify(f.type)
            if kind == "amount":
                self.amounts += (f.name,)
                self.wire_fields[f.encode_name] = (kind, extra)
            elif kind == "enum":
                raw = f"{f.name}_raw"
                if raw in encode_names:
                    self.enums += ((f.name, extra),)
                    self.wire_fields[f.encode_name] = (kind, (extra, encode_names[raw]))
            elif kind in ("struct", "list"):
                self.nested += ((f.name, extra),)
                self.wire_fields[f.encode_name] = (kind, extra)
        # One C-level call fetching every amount as a tuple (attrgetter of one name returns
        # the bare value, so single-amount structs get a tuple-making wrapper).
        self.get_amounts: Callable[[Any], tuple[Any, ...]] | None = None
        if len(self.amounts) > 1:
            self.get_amounts = operator.attrgetter(*self.amounts)
        elif self.amounts:
            only = self.amounts[0]
            self.get_amounts = lambda obj: (getattr(obj, only),)


def _classify(t: msgspec.inspect.Type) -> tuple[str, Any]:
    if isinstance(t, msgspec.inspect.UnionType):
        inner = [x for x in t.types if not isinstance(x, msgspec.inspect.NoneType)]
        if len(inner) == 1:
            kind, extra = _classify(inner[0])
            return kind, (extra if kind != "amount" else True)
        return "other", None
    if isinstance(t, msgspec.inspect.DecimalType):
        return "amount", False  # extra: whether None (i.e. "") is allowed
    if isinstance(t, msgspec.inspect.EnumType):
        return "enum", t.cls
    if isinstance(t, msgspec.inspect.StructType):
        return "struct", t.cls
    if isinstance(t, msgspec.inspect.ListType) and isinstance(
        t.item_type, msgspec.inspect.StructType
    ):
        return "list", t.item_type.cls
    return "other", None


_shapes: dict[type[Any], _Shape] = {}


def _shape(struct: type[msgspec.Struct]) -> _Shape:
    shape = _shapes.get(struct)
    if shape is None:
        shape = _shapes[struct] = _Shape(struct)
    return shape


# A literal "UNKNOWN" from Binance is as unknown to this release as any new value.
_LITERAL_UNKNOWN = b'"UNKNOWN"'
_ZERO = Decimal(0)


def _has_free_text(target: Any, seen: frozenset[Any] = frozenset()) -> bool:
    """Whether a value of ``target`` can hold a string that is neither an amount nor an
    open enum (or its raw companion): where a comma-digit could be text, not grouping."""
    if get_origin(target) is list:
        target = get_args(target)[0]
    if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
        return True
    if target in seen:
        return False
    info = msgspec.inspect.type_info(target)
    assert isinstance(info, msgspec.inspect.StructType)
    raws = {f"{name}_raw" for name, _ in _shape(target).enums}
    plain = (
        msgspec.inspect.IntType,
        msgspec.inspect.FloatType,
        msgspec.inspect.BoolType,
        msgspec.inspect.NoneType,
    )
    for f in info.fields:
        if f.name in raws:
            continue
        kind, extra = _classify(f.type)
        if kind in ("amount", "enum"):
            continue
        if kind in ("struct", "list"):
            if _has_free_text(extra, seen | {target}):
                return True
            continue
        types = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        if not all(isinstance(t, plain) for t in types):
            return True
    return False


def _compile_check(struct: type[msgspec.Struct]) -> Callable[[Any], bool]:
    """The fast path's check of one decoded Struct type: every amount finite, no open enum
    decoded as ``UNKNOWN`` (its raw string must then be kept, which the slow path does), no
    raw companion set (only the slow path sets one), and the same for nested values.

    Compiled once per type into a function that names each field: ``r.uni_mmr.is_finite()
    and ... and r.account_status != "UNKNOWN" and r.account_status_raw is None``. CPython
    specialises each of those attribute loads and method calls, so the whole check costs a
    fraction of a generic one (a tuple of the fields, C-level getters, ``map``): about
    0.15 µs instead of 0.5 µs for AccountInfo. The source is built from the Struct's own
    attribute names only, which are identifiers (checked).

    Each amount is checked, rather than proven finite from the bytes: a search of a 250-byte
    body for "nan" and "inf" in any case (escapes and whitespace included) costs more than
    this whole check, and msgspec has no finiteness constraint for ``Decimal``.
    """
    shape = _shape(struct)
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    enums = {name for name, _ in shape.enums}
    raws = {f"{name}_raw" for name in enums}
    nested = {name for name, _ in shape.nested}
    fast: list[str] = []  # amounts assumed present: the usual body
    nullable: list[str] = []  # the same with ``None`` (an empty amount) allowed
    for f in info.fields:
        name = f.name
        if not name.isidentifier() or keyword.iskeyword(name):
            raise TypeError(f"{struct.__qualname__}.{name} is not an identifier")
        kind, extra = _classify(f.type)
        if kind == "amount":
            fast.append(f"r.{name}.is_finite()")
            nullable.append(f"((v := r.{name}) is None or v.is_finite())" if extra else fast[-1])
        elif name in enums:
            # Open enums are str enums: an UNKNOWN member compares equal to its value.
            fast.append(f'r.{name} != "UNKNOWN"')
            nullable.append(fast[-1])
        elif name in raws:
            fast.append(f"r.{name} is None")
            nullable.append(fast[-1])
        elif name in nested:
            fast.append(f"_fast_ok(r.{name})")
            nullable.append(fast[-1])
    source = (
        "def check(r):\n"
        "    try:\n"
        f"        return {' and '.join(fast) or 'True'}\n"
        "    except AttributeError:  # None.is_finite: an empty amount among them\n"
        f"        return {' and '.join(nullable) or 'True'}\n"
    )
    namespace: dict[str, Any] = {"_fast_ok": _fast_ok}
    # Safe to run: the source holds only our fixed text and the Struct's checked identifiers.
    exec(compile(source, f"<check of {struct.__qualname__}>", "exec"), namespace)  # noqa: S102
    check: Callable[[Any], bool] = namespace["check"]
    return check


def _fast_ok(obj: Any) -> bool:
    """The fast path's check of any decoded value: lists item by item, each Struct through
    its type's compiled check (:func:`_compile_check`), anything else passes."""
    if isinstance(obj, list):
        return all(map(_fast_ok, obj))
    if isinstance(obj, msgspec.Struct):
        check = _checks.get(type(obj))
        if check is None:
            check = _checks[type(obj)] = _compile_check(type(obj))
        return check(obj)
    return True


_checks: dict[type[Any], Callable[[Any], bool]] = {}


def _amount_wire_names(target: Any) -> frozenset[str]:
    """Wire names of every amount field reachable from ``target`` (a Struct or list of them)."""
    if get_origin(target) is list:
        target = get_args(target)[0]
    if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
        return frozenset()
    names: set[str] = set()
    for wire, (kind, extra) in _shape(target).wire_fields.items():
        if kind == "amount":
            names.add(wire)
        elif kind in ("struct", "list"):
            names |= _amount_wire_names(extra)
    return frozenset(names)


_field_patterns: dict[str, re.Pattern[bytes]] = {}


def _patch_quirks(body: bytes, message: str, amounts: frozenset[str]) -> bytes | None:
    """Rewrite the documented amount quirks of the field msgspec complained about.

    Fast path for ``"122,559.90199491"`` (strict groups of three) and ``""`` (-> null): fix
    every value of that field name in place so the next fast decode passes. None when the
    complaint is about anything else: the slow path then explains it.
    """
    if not message.startswith("Invalid decimal string"):
        return None
    match = _PATH_RE.search(message)
    if match is None:
        return None
    name = match.group(1).rsplit(".", 1)[-1]
    if name not in amounts:
        return None
    pattern = _field_patterns.get(name)
    if pattern is None:
        pattern = _field_patterns[name] = re.compile(
            b'("' + re.escape(name.encode()) + rb'"\s*:\s*)"([^"\\]*)"'
        )
    changed = False

    def fix(m: re.Match[bytes]) -> bytes:
        nonlocal changed
        value = m.group(2)
        if value == b"":
            changed = True
            return m.group(1) + b"null"
        if _THOUSANDS_BYTES_RE.fullmatch(value):
            changed = True
            return m.group(1) + b'"' + value.replace(b",", b"") + b'"'
        return m.group(0)

    patched = pattern.sub(fix, body)
    return patched if changed else None


_THOUSANDS_BYTES_RE = re.compile(rb"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


# --- slow path -------------------------------------------------------------------------


def _normalise(value: Any, target: type[Any], path: str) -> Any:
    """Rewrite the documented quirks in a plain-JSON value so msgspec can convert it."""
    if isinstance(value, list):
        # The top-level target of an array endpoint is list[Item]; nested lists come here
        # with their item type already.
        item_type = get_args(target)[0] if get_origin(target) is list else target
        return [_normalise(item, item_type, f"{path}[{i}]") for i, item in enumerate(value)]
    if not (
        isinstance(value, dict) and isinstance(target, type) and issubclass(target, msgspec.Struct)
    ):
        return value
    shape = _shape(target)
    out = dict(value)
    for wire, (kind, extra) in shape.wire_fields.items():
        if wire not in value:
            continue
        item = value[wire]
        where = f"{path}.{wire}"
        if kind == "amount":
            out[wire] = _amount(item, nullable=extra, where=where)
        elif kind == "enum":
            cls, raw_wire = extra
            # cls(item) maps unknown values to UNKNOWN; a literal "UNKNOWN" from Binance is
            # just as unknown to this release, so its raw string is kept as well.
            if isinstance(item, str) and cls(item) is cls.__members__["UNKNOWN"]:
                out[raw_wire] = item
        else:
            out[wire] = _normalise(item, extra, where)
    return out


def _amount(item: Any, *, nullable: bool, where: str) -> Any:
    if isinstance(item, str):
        if item == "" and nullable:
            return None
        if "," in item and _THOUSANDS_RE.fullmatch(item):
            item = item.replace(",", "")
        try:
            number = Decimal(item)
        except ArithmeticError:
            raise DecodeError(f"{where} is not a decimal number: {item!r}", field=where) from None
        if not number.is_finite():
            raise DecodeError(f"{where} is not a decimal number: {item!r}", field=where)
        return item
    if isinstance(item, bool) or (item is not None and not isinstance(item, (int, Decimal))):
        raise DecodeError(f"{where} is not a decimal number: {item!r}", field=where)
    return item


def _slow_decode(body: bytes, target: type[T], status: int) -> T:
    try:
        plain = _plain_decoder.decode(body)
    except msgspec.DecodeError:
        kind = "an HTML page" if body.lstrip()[:1] == b"<" else "malformed or truncated JSON"
        raise DecodeError(f"response is {kind}", status=status, body=body) from None
    if isinstance(plain, dict) and isinstance(plain.get("code"), int) and plain["code"] < 0:
        # Some endpoints answer errors with HTTP 200 and Binance's error body.
        raise error_for(status, plain["code"], str(plain.get("msg", "")), {})
    try:
        normalised = _normalise(plain, target, "$")
    except DecodeError as exc:
        raise DecodeError(str(exc), status=status, body=body, field=exc.field) from None
    try:
        result: T = msgspec.convert(normalised, target, strict=False)
    except msgspec.ValidationError as exc:
        raise DecodeError(
            f"unexpected response shape: {exc}", status=status, body=body, field=_field_of(exc)
        ) from None
    return result


def _field_of(exc: msgspec.ValidationError) -> str | None:
    """The JSON path msgspec's message names, extended by a missing field's name."""
    text = str(exc)
    match = _PATH_RE.search(text)
    path = match.group(1) if match else "$"
    missing = _MISSING_RE.search(text)
    if missing:
        return f"{path}.{missing.group(1)}"
    return path if match else None


# A comma followed by a digit: in a compact JSON body only a thousands separator (or a
# number array, which the strict checks below tell apart).
_GROUPING = re.compile(rb",\d")
# A whole string in strict groups of three, quotes included: "-122,559.9".
_QUOTED_GROUPED = re.compile(rb'"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"')
# The first comma-digit, like _GROUPING, matched on to the closing quote (more than two
# bytes) when that comma is the only separator of a string in strict groups of three
# ("-122,559.9"): the lookbehinds check the string's start (quote, sign, one to three
# digits), the rest its end (two more digits, a fraction, the quote). Any other comma fails
# at the first \d, so the scan costs what _GROUPING's does (no group: a capturing one costs
# ~30 ns per call); only a comma-digit pays for the checks, within this one C call.
_SEPARATOR = re.compile(
    rb',\d(?:(?:(?<="\d\d\d,\d)|(?<="\d\d,\d)|(?<="\d,\d)'
    rb'|(?<="[+-]\d\d\d,\d)|(?<="[+-]\d\d,\d)|(?<="[+-]\d,\d))\d\d(?:\.\d+)?"|)'
)
# One member whose value is an amount in strict groups of three: "name":"-1,234.5".
_GROUPED_MEMBER = re.compile(rb'"([^"]*)":("[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")')


def _strip_first_grouped(body: bytes, comma: int) -> bytes:
    """``body`` with the separators removed from the string in strict groups of three that
    holds the comma-digit at index ``comma``; ``body`` itself when it is not in one.

    For types without free text (see :func:`_has_free_text`): a string in that form can
    only be an amount (wanted), an open enum's value (then unknown: the check sends the body
    to the slow path) or in a field the type does not have (ignored by the decode). Only the
    first such string is rewritten, which is all the documented example needs: any further
    comma-digit is left in place, so if it is in an amount msgspec refuses it and the quirk
    patcher (or the slow path, for a malformed group like ``"1,22"``) takes over.
    """
    # The common case, one separator ("122,559.9"), never comes here: _SEPARATOR
    # recognises it during the scan. The string starts at most 5 bytes before the comma
    # (quote, sign, three digits): one regex match from its opening quote, two slices.
    quote = body.rfind(b'"', 0, comma)
    # No quote between ``quote`` and the comma: a match at ``quote`` contains it.
    match = _QUOTED_GROUPED.match(body, quote) if quote >= 0 else None
    if match is None:
        return body
    return body[:quote] + match.group().replace(b",", b"") + body[match.end() :]


def _strip_grouped_amounts(body: bytes, comma: int, amounts: frozenset[bytes]) -> bytes | None:
    """``body`` with thousands separators removed from amounts, starting at the separator
    at index ``comma``; None unless every comma-digit is one, in strict groups of three, in
    the string value of a ``"name":`` member whose name is an amount (for types with free
    text, where a comma-digit may belong to the text)."""
    if body.find(b"\\") >= 0:
        return None  # an escaped quote would fool the quote searches below
    out = b""
    start = 0
    while True:
        key = body.rfind(b'"', start, body.rfind(b'"', start, comma) - 2)
        match = _GROUPED_MEMBER.match(body, key) if key >= 0 else None
        if match is None or match.end() <= comma or match.group(1) not in amounts:
            return None
        out += body[start : match.start(2)] + match.group(2).replace(b",", b"")
        start = match.end()
        found = _GROUPING.search(body, start)
        if found is None:
            return out + body[start:]
        comma = found.start()


class ResponseDecoder(Generic[T]):
    """Decodes a successful response body into ``T`` (a Struct or a list of Structs).

    Amount strings follow Python's :class:`~decimal.Decimal` syntax (so ``"1E+5"`` is read
    as 100000); ``NaN`` and infinities are refused.

    Build one per type and reuse it: it holds the compiled msgspec decoder.
    """

    __slots__ = ("_amount_bytes", "_amounts", "_check", "_decoder", "_flat", "type")

    def __init__(self, type_: type[T]) -> None:
        self.type = type_
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self._amounts = _amount_wire_names(type_)
        self._amount_bytes: frozenset[bytes] | None = None  # None: no free text in T
        if _has_free_text(type_):
            self._amount_bytes = frozenset(name.encode() for name in self._amounts)
        self._check: Callable[[Any], bool] = _fast_ok
        # A Struct with no nested Structs (AccountInfo) needs no count of unknown enum
        # values: its compiled check looks at each of its open enums, and one without a raw
        # companion decodes the same on both paths.
        self._flat = False
        if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
            self._check = _checks.get(type_) or _checks.setdefault(type_, _compile_check(type_))
            self._flat = not _shape(type_).nested

    def decode(self, body: bytes, status: int = 200) -> T:
        """Decode ``body``; raise :class:`DecodeError` (or an :class:`APIError` carried in a
        200 body) when it is not a valid ``T``."""
        flat = self._flat
        seen = 0 if flat else UNKNOWN_VALUES_SEEN[0]
        data: bytes | bytearray = body
        amounts = self._amount_bytes
        if amounts is None:
            found = _SEPARATOR.search(body)
            if found is not None:
                comma, end = found.span()
                if end - comma > 2:
                    # The one separator of a "122,559.9": deleted from a copy, in C.
                    data = bytearray(body)
                    del data[comma]
                else:
                    data = _strip_first_grouped(body, comma)
        else:
            found = _GROUPING.search(body)
            if found is not None:
                data = _strip_grouped_amounts(body, found.start(), amounts) or body
        try:
            result = self._decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return self._decode_quirky(body, status)
        if (flat or UNKNOWN_VALUES_SEEN[0] == seen) and self._check(result):
            return result
        return _slow_decode(body, self.type, status)

    def _decode_quirky(self, body: bytes, status: int) -> T:
        """The fast decode failed: patch the quirks msgspec names, one field name at a
        time, or explain the failure on the slow path."""
        if _LITERAL_UNKNOWN in body:
            return _slow_decode(body, self.type, status)
        data = body
        seen = UNKNOWN_VALUES_SEEN[0]
        # Each pass can fix one quirky field name; a body has at most that many.
        for _ in range(len(self._amounts) + 1):
            try:
                result = self._decoder.decode(data)
            except msgspec.ValidationError as exc:
                patched = _patch_quirks(data, str(exc), self._amounts)
                if patched is None:
                    break
                data = patched
                continue
            except msgspec.DecodeError:
                break
            if UNKNOWN_VALUES_SEEN[0] != seen or not self._check(result):
                break  # an unknown enum value (keep its raw string) or a NaN: explain it
            return result
        return _slow_decode(body, self.type, status)


def raise_for_error(status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the typed :class:`APIError` for a non-2xx answer; return for a 2xx one.

    ``headers`` must have lower-case names. A body that is not Binance's error JSON (an HTML
    page from a proxy or the WAF, an empty body) still gives the status's error class, with
    an excerpt of the body as its message.
    """
    if 200 <= status < 300:
        return
    try:
        err = _error_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        text = excerpt(body)
        msg = f"non-JSON error body: {text!r}" if text else "empty error body"
        raise error_for(status, None, msg, headers) from None
    raise error_for(status, err.code, err.msg, headers)


_decoders: dict[Any, ResponseDecoder[Any]] = {}


def decoder_for(type_: Any) -> ResponseDecoder[Any]:
    """The process's one :class:`ResponseDecoder` of ``type_`` (built at first use)."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = ResponseDecoder(type_)
    return decoder


_account_decoder = ResponseDecoder(AccountInfo)
_decoders[AccountInfo] = _account_decoder


def decode_account_info(body: bytes) -> AccountInfo:
    """Decode the body of ``GET /sapi/v1/portfolio/account`` into :class:`AccountInfo`.

    Pure and usable without a client: ``decode_account_info(b'{"uniMMR": "5167.9", ...}')``.
    Raises :class:`~binance_pmpro.errors.DecodeError` naming the field for a malformed amount,
    and the matching :class:`~binance_pmpro.errors.APIError` for an error body.
    """
    return _account_decoder.decode(body)
