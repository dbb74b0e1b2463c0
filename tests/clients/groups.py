"""Consumer groups through a running Sluice with a Python Kafka client.

usage: groups.py confluent|kafka-python|kafka-python-sticky BOOTSTRAP TOPIC COUNT

kafka-python-sticky: two members of one group at once, with kafka-python's
(eager) sticky assignor, share TOPIC's partitions; when one leaves, the
other gets them all and keeps its own.

The others: creates TOPIC with 4 partitions and produces COUNT messages. A group
consumer reads about half and commits what it processed, then leaves; a
second consumer of the same group reads the rest, starting from the
committed offsets: together they read every message exactly once. The
group's committed offsets then equal the log end offsets. Exits non-zero
on any difference.
"""
import sys
import time

PARTITIONS = 4


def confluent(bootstrap, topic, count):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(60)
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(count):
        p.produce(topic, value=f"m-{i}".encode(), partition=i % PARTITIONS)
        p.poll(0)
    assert p.flush(60) == 0, "undelivered messages"
    group = f"{topic}-group"

    def consume(want):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        got = []
        deadline = time.time() + 60
        while len(got) < want and time.time() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got.append(m.value().decode())
        if got:
            c.commit(asynchronous=False)
        c.close()
        return got

    first = consume(count // 2)
    second = consume(count - len(first))
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    committed = c.committed([TopicPartition(topic, i) for i in range(PARTITIONS)], timeout=30)
    ends = [c.get_watermark_offsets(TopicPartition(topic, i), timeout=30)[1] for i in range(PARTITIONS)]
    c.close()
    described = admin.describe_consumer_groups([group])[group].result(60)
    return first, second, [tp.offset for tp in committed], ends, str(described.state)


def kafka_python(bootstrap, topic, count):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    p = KafkaProducer(bootstrap_servers=bootstrap)
    futures = [p.send(topic, value=f"m-{i}".encode(), partition=i % PARTITIONS) for i in range(count)]
    p.flush(60)
    for f in futures:
        f.get(timeout=60)
    p.close()
    group = f"{topic}-group"

    def consume(want):
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          consumer_timeout_ms=20000)
        got = []
        for m in c:
            got.append(m.value.decode())
            if len(got) >= want:
                break
        if got:
            c.commit()
        c.close()
        return got

    first = consume(count // 2)
    second = consume(count - len(first))
    tps = [TopicPartition(topic, i) for i in range(PARTITIONS)]

    def committed_offsets():
        offsets = admin.list_group_offsets({group: tps})[group]
        return [offsets[tp].offset for tp in tps]

    committed = committed_offsets()
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    ends_map = c.end_offsets(tps)
    ends = [ends_map[tp] for tp in tps]
    c.close()
    state = admin.describe_groups([group])[group]["group_state"]

    # kafka-consumer-groups.sh --reset-offsets, while the group is empty:
    # a shift, then to earliest; a new consumer reads everything again.
    from kafka.admin import OffsetSpec
    shifted = admin.reset_group_offsets(group, {tp: ends[tp.partition] - 10 for tp in tps})
    assert all(r["error"].errno == 0 for r in shifted.values()), shifted
    assert committed_offsets() == [e - 10 for e in ends], committed_offsets()
    admin.reset_group_offsets(group, {tp: OffsetSpec.EARLIEST for tp in tps})
    assert committed_offsets() == [0] * PARTITIONS, committed_offsets()
    again = consume(count)
    assert sorted(again) == sorted(first + second), f"read {len(again)} again"
    # OffsetDelete while the group is empty.
    admin.delete_group_offsets(group, tps[:1])
    assert committed_offsets()[0] == -1, committed_offsets()
    admin.close()
    return first, second, committed, ends, state


def kafka_python_sticky(bootstrap, topic):
    import threading
    from kafka import KafkaAdminClient, KafkaConsumer
    from kafka.admin import NewTopic
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()

    # Each member polls on its own thread (a member's poll blocks while its
    # rebalance completes, which needs the other member to poll too) and
    # publishes what it owns.
    owned = {}
    stops = {}

    def member(name):
        c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-group",
                          partition_assignment_strategy=[StickyPartitionAssignor],
                          session_timeout_ms=10000, heartbeat_interval_ms=500)
        while not stops[name].is_set():
            c.poll(timeout_ms=100)
            owned[name] = {tp.partition for tp in c.assignment()}
        c.close()
        owned[name] = set()

    def start(name):
        stops[name] = threading.Event()
        owned[name] = set()
        t = threading.Thread(target=member, args=(name,), daemon=True)
        t.start()
        return t

    def until(what, done):
        deadline = time.time() + 60
        while not done():
            if time.time() > deadline:
                sys.exit(f"kafka-python-sticky: timed out until {what}: {owned}")
            time.sleep(0.1)

    every = set(range(PARTITIONS))
    threads = {name: start(name) for name in ("a", "b")}
    until("both members share the partitions",
          lambda: owned["a"] and owned["b"] and not owned["a"] & owned["b"]
          and owned["a"] | owned["b"] == every)
    kept = set(owned["b"])
    stops["a"].set()
    threads["a"].join(30)
    until("the member left has them all", lambda: owned["b"] == every)
    stops["b"].set()
    threads["b"].join(30)
    print(f"kafka-python-sticky: shared, then {sorted(kept)} kept and all taken over")


def main():
    if sys.argv[1] == "kafka-python-sticky":
        kafka_python_sticky(sys.argv[2], sys.argv[3])
        return
    client, bootstrap, topic, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    run = {"confluent": confluent, "kafka-python": kafka_python}[client]
    first, second, committed, ends, state = run(bootstrap, topic, count)
    want = {f"m-{i}" for i in range(count)}
    if not first or not second:
        sys.exit(f"{client}: one consumer read nothing ({len(first)}, {len(second)})")
    if set(first) & set(second):
        sys.exit(f"{client}: the second consumer re-read committed messages")
    if set(first) | set(second) != want or len(first) + len(second) != count:
        sys.exit(f"{client}: read {len(first)} + {len(second)} of {count} messages")
    if committed != ends:
        sys.exit(f"{client}: committed {committed}, log end {ends}")
    if "EMPTY" not in state.upper():
        sys.exit(f"{client}: group state {state} after both consumers left")
    print(f"{client}: {len(first)} + {len(second)} messages, committed {committed}")


if __name__ == "__main__":
    main()
