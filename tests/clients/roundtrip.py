"""Round trip through a running Sluice with a Python Kafka client.

usage: roundtrip.py confluent|kafka-python BOOTSTRAP TOPIC COUNT

Produces COUNT messages with keys and headers, reads them back from the
beginning of partition 0 and checks every byte. Exits non-zero on any
difference.
"""
import sys
import time


def messages(count):
    for i in range(count):
        key = None if i % 3 == 0 else f"key-{i % 100}".encode()
        value = f"value-{i}-".encode() + bytes(range(i % 50))
        headers = [("h", f"hv-{i}".encode())] if i % 2 == 0 else []
        yield key, value, headers


def confluent(bootstrap, topic, count):
    from confluent_kafka import Consumer, Producer, TopicPartition

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "compression.type": "lz4",
                  "enable.idempotence": True})
    failures = []
    for key, value, headers in messages(count):
        while True:
            try:
                p.produce(topic, value=value, key=key, headers=headers, partition=0,
                          on_delivery=lambda err, msg: err and failures.append(err))
                break
            except BufferError:
                p.poll(0.05)
    assert p.flush(60) == 0, "undelivered messages"
    assert not failures, failures
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 60
    while len(got) < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append((m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])]))
    c.close()
    return got


def kafka_python(bootstrap, topic, count):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip", enable_idempotence=True)
    futures = [p.send(topic, value=v, key=k, headers=h, partition=0) for k, v, h in messages(count)]
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    p.close()
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=60000)
    c.assign([TopicPartition(topic, 0)])
    c.seek_to_beginning()
    got = []
    for m in c:
        got.append((m.key, m.value, list(m.headers)))
        if len(got) == count:
            break
    c.close()
    return got


def main():
    client, bootstrap, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = {"confluent": confluent, "kafka-python": kafka_python}[client]
    got = run(bootstrap, topic, count)
    want = [(k, v, h) for k, v, h in messages(count)]
    if len(got) != len(want):
        sys.exit(f"{client}: read {len(got)} of {len(want)} messages")
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            sys.exit(f"{client}: message {i} differs: {g!r} != {w!r}")
    print(f"{client}: {count} messages round-tripped")


if __name__ == "__main__":
    main()
