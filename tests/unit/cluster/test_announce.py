"""The live relay's notification format: parsed back as written, and inline only while it fits."""

from cluster.announce import EVENT, MAX_NOTICE_BYTES, TWINS, Notice, inline, notice


def test_a_twins_notice_parses_back_to_its_ids() -> None:
    """Kind, writer and the space-separated vehicle ids survive the round trip."""
    parsed = Notice.parse(notice(TWINS, "worker-1", "veh-1 veh-2"))
    assert parsed == Notice(TWINS, "worker-1", "veh-1 veh-2")
    assert parsed.body.split() == ["veh-1", "veh-2"]


def test_malformed_or_unknown_notices_are_ignored() -> None:
    """Anything not written by the relay parses to None rather than raising."""
    assert Notice.parse("") is None
    assert Notice.parse("t worker veh-1") is None
    assert Notice.parse("q\nworker\nbody") is None


def test_an_event_fits_inline_up_to_the_limit_and_not_beyond() -> None:
    """An event is carried in the notification while the whole payload stays within MAX_NOTICE_BYTES."""
    topic = "alerts/default/major/low-battery/veh-1"
    overhead = len(notice(EVENT, "w1", f"{topic}\n").encode())
    fits = b"x" * (MAX_NOTICE_BYTES - overhead)
    text = inline("w1", topic, fits)
    assert text is not None
    parsed = Notice.parse(text)
    assert parsed is not None
    assert parsed.event() == (topic, fits)
    assert inline("w1", topic, fits + b"x") is None


def test_events_that_cannot_travel_as_text_go_by_reference() -> None:
    """Payloads that are not UTF-8, or topics with a newline, are never inlined."""
    assert inline("w1", "events/commands/veh-1/c1", b"\xff\xfe") is None
    assert inline("w1", "alerts/a\nb", b"{}") is None
