"""Kafka admin answers through a running Sluice, as confluent-kafka's
AdminClient reads them.

usage: admin.py authorized-operations BOOTSTRAP TOPIC

authorized-operations: describe_topics, describe_cluster and
describe_consumer_groups asked for their authorized operations (KIP-430)
get every operation the resource supports, as Kafka answers with no
authorizer configured; not an empty set.
"""
import sys
import time

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AclOperation, AdminClient, NewTopic

TOPIC_OPS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
             AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS,
             AclOperation.ALTER_CONFIGS}
CLUSTER_OPS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS,
               AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER,
               AclOperation.DESCRIBE}
GROUP_OPS = {AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE}


def describe_group(admin, group):
    """The group described, once its coordinator has loaded (the first
    request creates __consumer_offsets; COORDINATOR_LOAD_IN_PROGRESS until
    its partition is loaded)."""
    deadline = time.time() + 60
    while True:
        f = admin.describe_consumer_groups([group], include_authorized_operations=True)[group]
        try:
            return f.result(30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.COORDINATOR_LOAD_IN_PROGRESS or time.time() > deadline:
                raise
            time.sleep(0.2)


def authorized_operations(bootstrap, topic):
    a = AdminClient({"bootstrap.servers": bootstrap})
    for f in a.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(30)
    described = a.describe_topics(TopicCollection([topic]), include_authorized_operations=True)
    t = described[topic].result(30)
    assert set(t.authorized_operations or []) == TOPIC_OPS, t.authorized_operations
    c = a.describe_cluster(include_authorized_operations=True).result(30)
    assert set(c.authorized_operations or []) == CLUSTER_OPS, c.authorized_operations
    g = describe_group(a, f"{topic}-group")
    assert set(g.authorized_operations or []) == GROUP_OPS, g.authorized_operations
    # Not asked: not sent.
    t = a.describe_topics(TopicCollection([topic])).values()
    assert all(not x.result(30).authorized_operations for x in t)


if __name__ == "__main__":
    {"authorized-operations": authorized_operations}[sys.argv[1]](*sys.argv[2:])
