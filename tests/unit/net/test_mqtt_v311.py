"""MQTT 3.1.1 framing (``net/mqtt/_v311.py``) and a 3.1.1 connection, without a broker."""

from __future__ import annotations

import itertools

import mqtt5
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.net.mqtt import InboundMessage, _v311
from iot_bridge.net.mqtt._connection import MQTT_3_1_1, InboundQueue, MqttConnection
from tests.unit.net.test_mqtt_connection import RecordingTransport

QOS = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE, mqtt5.QoS.EXACTLY_ONCE)
topics = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="#+\x00"),
    min_size=1,
    max_size=40,
)


def roundtrip(packet: mqtt5.Packet) -> mqtt5.Packet:
    """Encode as 3.1.1, read back, and check the whole buffer was used."""
    data = _v311.encode(packet)
    decoded, size = _v311.read(memoryview(data))
    assert size == len(data)
    return decoded


@given(
    topic=topics,
    payload=st.binary(max_size=400),
    qos=st.sampled_from([0, 1, 2]),
    retain=st.booleans(),
    duplicate=st.booleans(),
    packet_id=st.integers(1, 65_535),
)
def test_publish_roundtrips_every_field(
    *, topic: str, payload: bytes, qos: int, retain: bool, duplicate: bool, packet_id: int
) -> None:
    """Property: a PUBLISH written as 3.1.1 reads back with the same topic, payload and flags."""
    packet = mqtt5.PublishPacket(
        topic,
        payload,
        qos=QOS[qos],
        retain=retain,
        packet_id=packet_id if qos else None,
        duplicate=duplicate and qos > 0,
    )
    decoded = roundtrip(packet)
    assert isinstance(decoded, mqtt5.PublishPacket)
    assert (decoded.topic, decoded.payload, decoded.qos, decoded.retain) == (
        topic,
        payload,
        QOS[qos],
        retain,
    )
    assert decoded.packet_id == (packet_id if qos else None)
    assert decoded.duplicate == (duplicate and qos > 0)


def test_publish_has_no_properties_in_3_1_1() -> None:
    """The 3.1.1 PUBLISH is header, topic, packet id, payload: nothing else (spec 3.3)."""
    packet = mqtt5.PublishPacket("a/b", b"hi", qos=mqtt5.QoS.AT_LEAST_ONCE, packet_id=10)
    assert _v311.encode(packet) == b"\x32\x09\x00\x03a/b\x00\x0ahi"


def test_connect_is_protocol_level_4_with_clean_session_false_and_credentials() -> None:
    """CONNECT: "MQTT", level 4, user/password flags, clean session 0, keep-alive, then the payload."""
    packet = mqtt5.ConnectPacket(
        "bridge",
        username="u",
        password=b"pw",
        clean_start=False,
        keep_alive=60,
        session_expiry_interval=3600,
        receive_max=10_000,
    )
    assert _v311.encode(packet) == (
        b"\x10\x19\x00\x04MQTT\x04\xc0\x00\x3c\x00\x06bridge\x00\x01u\x00\x02pw"
    )


def test_connect_carries_the_will_and_a_lone_password_gets_an_empty_user_name() -> None:
    """The will's QoS and retain go in the flags; 3.1.1 forbids a password without a user name."""
    will = mqtt5.Will("b/avail", payload=b"offline", qos=mqtt5.QoS.AT_LEAST_ONCE, retain=True)
    packet = mqtt5.ConnectPacket("c", password=b"p", will=will, keep_alive=5)
    data = _v311.encode(packet)
    flags = data[9]
    assert flags == 0x80 | 0x40 | 0x20 | 0x08 | 0x04  # user, password, will retain, QoS 1, will
    assert data.endswith(b"\x00\x01c\x00\x07b/avail\x00\x07offline\x00\x00\x00\x01p")


def test_subscribe_and_unsubscribe_carry_only_the_filters_and_qos() -> None:
    """SUBSCRIBE: packet id, then each filter with its QoS byte; UNSUBSCRIBE: the filters."""
    topic_filter = mqtt5.TopicFilter(
        "x/#",
        max_qos=mqtt5.QoS.AT_LEAST_ONCE,
        retain_handling=mqtt5.RetainHandling.SEND_IF_SUBSCRIPTION_NOT_EXISTS,
    )
    assert (
        _v311.encode(mqtt5.SubscribePacket(3, [topic_filter])) == b"\x82\x08\x00\x03\x00\x03x/#\x01"
    )
    assert _v311.encode(mqtt5.UnsubscribePacket(4, ["x/#"])) == b"\xa2\x07\x00\x04\x00\x03x/#"


def test_acks_pings_and_disconnect_are_the_short_3_1_1_forms() -> None:
    """PUBACK/PUBREC/PUBREL/PUBCOMP are type + id; PINGREQ and DISCONNECT are two bytes."""
    assert _v311.encode(mqtt5.PubAckPacket(258)) == b"\x40\x02\x01\x02"
    assert _v311.encode(mqtt5.PubRecPacket(1)) == b"\x50\x02\x00\x01"
    assert _v311.encode(mqtt5.PubRelPacket(1)) == b"\x62\x02\x00\x01"
    assert _v311.encode(mqtt5.PubCompPacket(1)) == b"\x70\x02\x00\x01"
    assert _v311.encode(mqtt5.PingReqPacket()) == b"\xc0\x00"
    assert _v311.encode(mqtt5.DisconnectPacket()) == b"\xe0\x00"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (0, mqtt5.ConnAckReasonCode.SUCCESS),
        (1, mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION),
        (2, mqtt5.ConnAckReasonCode.CLIENT_ID_NOT_VALID),
        (3, mqtt5.ConnAckReasonCode.SERVER_UNAVAILABLE),
        (4, mqtt5.ConnAckReasonCode.BAD_USER_NAME_OR_PASSWORD),
        (5, mqtt5.ConnAckReasonCode.NOT_AUTHORIZED),
        (77, mqtt5.ConnAckReasonCode.UNSPECIFIED_ERROR),
    ],
)
def test_connack_return_codes_become_the_mqtt5_reasons_of_the_same_meaning(
    code: int, reason: mqtt5.ConnAckReasonCode
) -> None:
    """3.1.1 return codes map onto MQTT 5 reason codes, so one refusal message fits both."""
    packet, size = _v311.read(memoryview(bytes([0x20, 2, 1, code])))
    assert size == 4
    assert isinstance(packet, mqtt5.ConnAckPacket)
    assert packet.reason_code == reason
    assert packet.session_present is True


def test_broker_replies_are_read_into_mqtt5_packet_objects() -> None:
    """SUBACK codes (granted QoS or 0x80), UNSUBACK, PUBACK and PINGRESP read back by type."""
    suback, _ = _v311.read(memoryview(b"\x90\x04\x00\x07\x01\x80"))
    assert isinstance(suback, mqtt5.SubAckPacket)
    assert suback.packet_id == 7
    assert [int(code) for code in suback.reason_codes] == [1, 0x80]
    unsuback, _ = _v311.read(memoryview(b"\xb0\x02\x00\x08"))
    assert isinstance(unsuback, mqtt5.UnsubAckPacket)
    assert unsuback.packet_id == 8
    puback, _ = _v311.read(memoryview(b"\x40\x02\x00\x09"))
    assert isinstance(puback, mqtt5.PubAckPacket)
    assert puback.packet_id == 9
    pingresp, _ = _v311.read(memoryview(b"\xd0\x00"))
    assert isinstance(pingresp, mqtt5.PingRespPacket)


@pytest.mark.parametrize("cut", range(1, 11))
def test_an_incomplete_packet_is_an_index_error_like_mqtt5_read(cut: int) -> None:
    """Any prefix of a packet says "not enough bytes" (IndexError), never a wrong packet."""
    data = b"\x32\x09\x00\x03a/b\x00\x0ahi"
    with pytest.raises(IndexError):
        _v311.read(memoryview(data[:cut]))


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x01\x00",  # topic length cut inside the packet
        b"\x30\x03\x00\x05a",  # topic longer than the packet
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        b"\x32\x05\x00\x01a\x00\x00",  # packet id 0
        b"\x30\x03\x00\x01\xff",  # topic not UTF-8
        b"\x20\x03\x00\x00\x00",  # CONNACK of the wrong length
        b"\x90\x03\x00\x01\x05",  # SUBACK code that does not exist
        b"\x40\x03\x00\x01\x00",  # PUBACK of the wrong length
        b"\x10\x00",  # a CONNECT: brokers never send one
        b"\xe0\x00",  # a DISCONNECT: 3.1.1 brokers never send one
        b"\x30\xff\xff\xff\xff\x01",  # remaining length over four bytes
    ],
)
def test_malformed_or_unexpected_packets_are_value_errors(data: bytes) -> None:
    """Bad input from the broker is a ValueError (the connection drops it), never a crash."""
    with pytest.raises(ValueError, match=r"."):
        _v311.read(memoryview(data))


def test_writing_a_packet_a_client_never_sends_is_refused() -> None:
    """encode() knows the client's packets only."""
    with pytest.raises(ValueError, match="cannot write"):
        _v311.encode(mqtt5.ConnAckPacket())


# --- a connection in 3.1.1 and the 3.1.1 refusal seen by an MQTT 5 connection ----------


def connect(queue: InboundQueue, protocol: str) -> tuple[MqttConnection, RecordingTransport]:
    """A connection of ``protocol`` wired to a recording transport."""
    connection = MqttConnection(queue, 1, read_coalesce_s=0.0, protocol=protocol)  # type: ignore[arg-type]
    transport = RecordingTransport(connection)
    connection.connection_made(transport)
    return connection, transport


STREAM_311 = b"".join(
    [
        b"\x20\x02\x01\x00",  # CONNACK, session present
        _v311.encode(mqtt5.PublishPacket("dev/a", b'{"apower": 1}', qos=QOS[1], packet_id=10)),
        _v311.encode(mqtt5.PublishPacket("dev/b", b"", retain=True)),
        b"\xd0\x00",
        _v311.encode(mqtt5.PublishPacket("dev/c", b"x" * 300, qos=QOS[1], packet_id=11)),
    ]
)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, len(STREAM_311)])
async def test_a_3_1_1_connection_decodes_a_stream_cut_anywhere(chunk: int) -> None:
    """A 3.1.1 connection queues the same messages whatever the read sizes, QoS 1 unacked."""
    queue = InboundQueue(100)
    connection, _ = connect(queue, MQTT_3_1_1)
    for start in range(0, len(STREAM_311), chunk):
        connection.data_received(STREAM_311[start : start + chunk])
    assert connection.connack.result().session_present is True
    assert queue.items == [
        InboundMessage("dev/a", b'{"apower": 1}', 1, False, False, (1, 10)),
        InboundMessage("dev/b", b"", 0, True, False, None),
        InboundMessage("dev/c", b"x" * 300, 1, False, False, (1, 11)),
    ]
    assert connection.unacked == {10, 11}


async def test_a_3_1_1_connection_acks_with_standard_pubacks_and_writes_3_1_1() -> None:
    """PUBACKs are the same bytes in both versions; send() writes the 3.1.1 form of a packet."""
    queue = InboundQueue(100)
    connection, transport = connect(queue, MQTT_3_1_1)
    connection.data_received(STREAM_311)
    assert connection.send_pubacks([10, 11]) == 2
    connection.send(mqtt5.UnsubscribePacket(5, ["x"]))
    assert bytes(transport.written) == b"\x40\x02\x00\x0a\x40\x02\x00\x0b\xa2\x05\x00\x05\x00\x01x"


@pytest.mark.parametrize("cuts", [[], [1], [2], [3], [1, 2, 3]])
async def test_an_mqtt5_connection_reads_a_3_1_1_refusal_as_unsupported_protocol(
    cuts: list[int],
) -> None:
    """The 3.1.1 CONNACK ``20 02 00 01`` an old broker answers MQTT 5 with is the CONNACK, reason 132."""
    queue = InboundQueue(100)
    connection, transport = connect(queue, "5")
    data = b"\x20\x02\x00\x01"
    bounds = [0, *cuts, len(data)]
    for start, end in itertools.pairwise(bounds):
        connection.data_received(data[start:end])
    connack = connection.connack.result()
    assert connack.reason_code == mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION
    assert connack.reason_str == "answered in MQTT 3.1.1 (CONNACK return code 1)"
    assert not transport.closed  # the client decides what to do with the refusal


@pytest.mark.parametrize("code", [0, 4, 5])
async def test_any_3_1_1_connack_to_mqtt5_means_no_mqtt5(code: int) -> None:
    """Even "accepted" or "bad password" in 3.1.1 framing says the broker speaks 3.1.1, not 5."""
    queue = InboundQueue(100)
    connection, _ = connect(queue, "5")
    connection.data_received(bytes([0x20, 0x02, 0x00, code]))
    connack = connection.connack.result()
    assert connack.reason_code == mqtt5.ConnAckReasonCode.UNSUPPORTED_PROTOCOL_VERSION
    assert f"return code {code}" in (connack.reason_str or "")


async def test_a_3_1_1_connack_after_the_connack_is_still_malformed() -> None:
    """Only the first answer may be a 3.1.1 CONNACK; later it is garbage that drops the connection."""
    queue = InboundQueue(100)
    connection, transport = connect(queue, "5")
    connection.data_received(mqtt5.ConnAckPacket().write())
    connection.data_received(b"\x20\x02\x00\x01")
    assert transport.closed
    assert "malformed packet" in connection.lost.result()
