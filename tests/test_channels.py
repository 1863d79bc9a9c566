"""Channel semantics: balance, preference, exceptions, closing, iteration."""

import pytest

import stacklessuv as s


def test_send_receive_and_balance():
    ch = s.channel()
    got = []

    def receiver():
        got.append(ch.receive())

    s.tasklet(receiver)()
    s.tasklet(receiver)()
    s.schedule()
    assert ch.balance == -2
    assert ch.queue is not None and ch.queue.blocked
    ch.send(1)
    ch.send(2)
    s.run()
    assert got == [1, 2]
    assert ch.balance == 0 and ch.queue is None


def test_blocked_senders_count_positive():
    ch = s.channel()
    for i in range(3):
        s.tasklet(ch.send)(i)
    s.schedule()
    assert ch.balance == 3
    assert [ch.receive() for _ in range(3)] == [0, 1, 2]
    assert ch.balance == 0
    s.run()


def order_of(preference, sender_first):
    """Who runs first after a rendezvous, for a given preference."""
    ch = s.channel()
    ch.preference = preference
    log = []

    def sender():
        ch.send("x")
        log.append("sender")

    def receiver():
        ch.receive()
        log.append("receiver")

    if sender_first:
        s.tasklet(sender)()
        s.tasklet(receiver)()
    else:
        s.tasklet(receiver)()
        s.tasklet(sender)()
    s.run()
    return log


def test_preference_receiver_default():
    assert s.channel().preference == -1
    # the sender arrives second: with prefer-receiver the woken receiver runs at once
    assert order_of(-1, sender_first=False) == ["receiver", "sender"]
    # the receiver arrives second and finds a sender: the receiver goes on (preferred)
    assert order_of(-1, sender_first=True) == ["receiver", "sender"]


def test_preference_sender():
    assert order_of(1, sender_first=True) == ["sender", "receiver"]
    assert order_of(1, sender_first=False) == ["sender", "receiver"]


def test_preference_none_never_switches():
    # whoever arrives second completes the rendezvous and keeps running
    assert order_of(0, sender_first=False) == ["sender", "receiver"]
    assert order_of(0, sender_first=True) == ["receiver", "sender"]


def test_preference_is_clamped():
    ch = s.channel()
    ch.preference = 5
    assert ch.preference == 1
    ch.preference = -7
    assert ch.preference == -1


def test_send_exception_raises_in_receiver():
    ch = s.channel()
    got = []

    def receiver():
        try:
            ch.receive()
        except ValueError as e:
            got.append(e.args)

    s.tasklet(receiver)()
    s.schedule()
    ch.send_exception(ValueError, 1, 2)
    s.run()
    assert got == [(1, 2)]


def test_send_throw_and_bomb():
    ch = s.channel()
    s.tasklet(ch.send_throw)(KeyError("k"))
    with pytest.raises(KeyError):
        ch.receive()
    s.tasklet(ch.send)(s.bomb(TypeError, TypeError("t")))
    with pytest.raises(TypeError, match="t"):
        ch.receive()
    b = s.bomb(IndexError, "i")
    assert b.type is IndexError and b.value == "i"
    with pytest.raises(IndexError):
        b.raise_()


def test_send_sequence_and_iteration():
    ch = s.channel()
    got = []

    def consumer():
        got.extend(ch)  # iterates until the channel is closed

    t = s.tasklet(consumer)()
    s.schedule()
    assert ch.send_sequence(range(5)) == 5
    ch.close()
    # the consumer was already waiting when the channel closed: it stays blocked
    assert ch.closing and t.blocked
    s.run()
    assert got == [0, 1, 2, 3, 4]
    t.kill()


def test_closed_channel_refuses_to_block():
    ch = s.channel()
    ch.close()
    assert ch.closed and ch.closing
    with pytest.raises(ValueError):
        ch.send(1)
    with pytest.raises(ValueError):
        ch.receive()
    assert list(ch) == []
    ch.open()
    assert not ch.closing


def test_closing_channel_drains_waiting_senders():
    ch = s.channel()
    s.tasklet(ch.send)(1)
    s.tasklet(ch.send)(2)
    s.schedule()
    ch.close()
    assert ch.closing and not ch.closed
    assert list(ch) == [1, 2]
    assert ch.closed
    s.run()


def test_ping_pong():
    a, b = s.channel(), s.channel()

    def pong():
        while True:
            x = a.receive()
            if x is None:
                return
            b.send(x + 1)

    s.tasklet(pong)()
    for i in range(1000):
        a.send(i)
        assert b.receive() == i + 1
    a.send(None)
    s.run()
