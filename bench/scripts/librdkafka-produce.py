#!/usr/bin/env python3
"""Produce throughput through librdkafka (confluent-kafka), as users measure it.

usage: librdkafka-produce.py BOOTSTRAP TOPIC COUNT BATCH_SIZE

COUNT records of 1 KiB, acks=all, linger.ms=5, batch.size=BATCH_SIZE,
librdkafka's default of up to 1000000 requests in flight per connection,
to partition 0 of TOPIC (which must exist). Prints MiB/s from the first
produce() to the last delivery report.
"""
import sys
import time

from confluent_kafka import Producer

bootstrap, topic, count, batch_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
p = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "linger.ms": 5,
    "batch.size": batch_size,
    "queue.buffering.max.kbytes": 1048576,
})
value = b"v" * 1024
failed = []


def report(err, _msg):
    if err is not None:
        failed.append(err)


start = time.monotonic()
for _ in range(count):
    while True:
        try:
            p.produce(topic, value, partition=0, on_delivery=report)
            break
        except BufferError:
            p.poll(0.001)
    p.poll(0)
p.flush(120)
secs = time.monotonic() - start
if failed or len(p) != 0:
    sys.exit(f"{len(failed)} failed, {len(p)} undelivered: {failed[:3]}")
print(f"librdkafka produce: {count} x 1 KiB, batch.size {batch_size}, acks=all: "
      f"{count * 1024 / secs / (1 << 20):.1f} MiB/s")
