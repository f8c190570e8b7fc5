"""LineFramer, split_command and plain_text on their own, against docs/protocol.md's framing rules."""

from __future__ import annotations

import pytest

from daemon.lines import BadEncoding, LineFramer, TooLong, plain_text, split_command


def drain(framer: LineFramer) -> list:
    """Every event the framer has ready, in order."""
    events = []
    while (event := framer.next()) is not None:
        events.append(event)
    return events


def framed(max_line: int, *chunks: bytes) -> list:
    framer = LineFramer(max_line)
    events = []
    for chunk in chunks:
        framer.feed(chunk)
        events += drain(framer)
    return events


def test_lines_are_split_at_lf_and_a_crlf_loses_its_cr():
    assert framed(64, b"one\ntwo\r\nthree\n") == ["one", "two", "three"]


def test_empty_lines_are_lines():
    assert framed(64, b"\n\r\nx\n") == ["", "", "x"]


def test_only_a_cr_just_before_the_lf_is_dropped():
    assert framed(64, b"a\rb\n", b"c\r\r\n") == ["a\rb", "c\r"]


def test_nothing_is_returned_before_the_line_ends():
    framer = LineFramer(64)
    assert framer.next() is None
    assert not framer.has_pending()
    framer.feed(b"hel")
    assert framer.next() is None
    assert framer.has_pending()
    framer.feed(b"lo\nwor")
    assert framer.next() == "hello"
    assert framer.next() is None
    assert framer.has_pending()
    framer.feed(b"ld\n")
    assert drain(framer) == ["world"]
    assert not framer.has_pending()


def test_a_line_fed_one_byte_at_a_time():
    text = "grüße, 世界\r\n".encode()
    assert framed(64, *(bytes([b]) for b in text)) == ["grüße, 世界"]


def test_a_cr_and_its_lf_in_different_feeds():
    assert framed(64, b"abc\r", b"\ndef\n") == ["abc", "def"]


def test_a_line_of_exactly_max_line_bytes_is_delivered_with_or_without_cr():
    exact = b"x" * 16
    assert framed(16, exact + b"\n", exact + b"\r\n") == ["x" * 16, "x" * 16]
    # a multi-byte character counts its bytes, not as one
    assert framed(16, "é".encode() * 8 + b"\n") == ["é" * 8]
    assert framed(16, "é".encode() * 8 + b"!\n") == [TooLong(16)]


def test_one_byte_over_max_line_is_too_long_whether_or_not_the_lf_has_come():
    assert framed(16, b"x" * 17 + b"\n") == [TooLong(16)]
    framer = LineFramer(16)
    framer.feed(b"x" * 17)  # could still be 16 bytes and a CR: wait
    assert framer.next() is None
    framer.feed(b"\nok\n")
    assert drain(framer) == [TooLong(16), "ok"]


def test_an_over_long_line_is_reported_once_and_the_next_line_is_served():
    assert framed(16, b"y" * 100 + b"\nnext\n") == [TooLong(16), "next"]


def test_an_over_long_line_spread_over_many_feeds_is_reported_once_and_not_kept():
    framer = LineFramer(16)
    events = []
    for _ in range(1000):  # 4 MB with no LF
        framer.feed(b"z" * 4096)
        events += drain(framer)
        assert not framer.has_pending()  # dropped as it comes: memory stays bounded
    assert events == [TooLong(16)]
    framer.feed(b"still the long line\nfresh start\r\nand more")
    assert drain(framer) == ["fresh start"]
    framer.feed(b"\n")
    assert drain(framer) == ["and more"]


def test_an_over_long_line_whose_lf_comes_in_the_same_feed_resyncs_at_once():
    assert framed(16, b"a" * 40 + b"\n" + b"b" * 40 + b"\nshort\n") == [TooLong(16), TooLong(16), "short"]


@pytest.mark.parametrize("raw", [
    b"\xc0\xaf",              # overlong '/'
    b"\xc0\x80",              # overlong NUL
    b"\xed\xa0\x80",          # a surrogate
    b"\xf4\x90\x80\x80",      # above U+10FFFF
    b"abc\xe2\x82",           # truncated sequence
    b"\xff",
])
def test_invalid_utf8_is_reported_and_the_connection_resyncs(raw):
    events = framed(64, raw + b"\nafter\n")
    assert len(events) == 2
    assert isinstance(events[0], BadEncoding)
    assert events[0].reason.startswith("invalid UTF-8 at byte ")
    assert events[1] == "after"


def test_the_reason_names_the_offending_byte():
    assert framed(64, b"abc\xff\n") == [BadEncoding("invalid UTF-8 at byte 3")]


def test_nul_is_a_bad_encoding():
    assert framed(64, b"nul\x00here\nok\n") == [BadEncoding("NUL character"), "ok"]


def test_take_rest_hands_back_what_was_not_framed_and_forgets_it():
    framer = LineFramer(64)
    framer.feed(b"LOGIN bob\r\n\x00\x01binary\npart")
    assert framer.next() == "LOGIN bob"
    assert framer.take_rest() == b"\x00\x01binary\npart"
    assert not framer.has_pending()
    assert framer.next() is None
    assert framer.take_rest() == b""


def test_take_rest_ends_the_skipping_of_an_over_long_line():
    framer = LineFramer(16)
    framer.feed(b"q" * 100)
    assert drain(framer) == [TooLong(16)]
    assert framer.take_rest() == b""
    framer.feed(b"raw bytes\n")  # after take_rest nothing is skipped any more
    assert framer.take_rest() == b"raw bytes\n"


@pytest.mark.parametrize("line, expected", [
    ("/msg bob hi there", ("/msg", "bob hi there")),
    ("/MSG Bob Hi", ("/msg", "Bob Hi")),        # the name is lower-cased, the arguments are not
    ("/quit", ("/quit", "")),
    ("/me   waves  ", ("/me", "waves")),          # arguments stripped
    ("/", ("/", "")),
    ("hello", None),
    ("", None),
    (" /msg", None),                              # only a line starting with / is a command
    ("//msg bob", None),                          # escaped: plain text
])
def test_split_command(line, expected):
    assert split_command(line) == expected


@pytest.mark.parametrize("line, expected", [
    ("hello", "hello"),
    ("//msg bob", "/msg bob"),
    ("///x", "//x"),
    ("/", "/"),
    ("", ""),
])
def test_plain_text(line, expected):
    assert plain_text(line) == expected
