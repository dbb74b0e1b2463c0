//! Authorization: the operations a client may perform on a resource.
//!
//! No authorizer is configured yet (Kafka's `authorizer.class.name` unset),
//! so every operation a resource type supports is allowed, and requests
//! that ask for their authorized operations (Metadata v8+, DescribeCluster,
//! DescribeGroups v3+, KIP-430) get all of them, as Kafka answers without
//! an authorizer. ACLs will answer here.

/// A resource type, as Kafka's ACLs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Topic,
    Group,
    Cluster,
}

/// Kafka's `AclOperation` codes, the bit each sets in a bitfield.
mod op {
    pub(super) const READ: u8 = 3;
    pub(super) const WRITE: u8 = 4;
    pub(super) const CREATE: u8 = 5;
    pub(super) const DELETE: u8 = 6;
    pub(super) const ALTER: u8 = 7;
    pub(super) const DESCRIBE: u8 = 8;
    pub(super) const CLUSTER_ACTION: u8 = 9;
    pub(super) const DESCRIBE_CONFIGS: u8 = 10;
    pub(super) const ALTER_CONFIGS: u8 = 11;
    pub(super) const IDEMPOTENT_WRITE: u8 = 12;
}

/// What a response carries when authorized operations were not asked for.
pub(crate) const NOT_REQUESTED: i32 = i32::MIN;

/// The operations a resource type supports (Kafka's `AclEntry.supportedOperations`).
fn supported(resource: Resource) -> &'static [u8] {
    use op::*;
    match resource {
        Resource::Topic => &[
            READ,
            WRITE,
            CREATE,
            DESCRIBE,
            DELETE,
            ALTER,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        Resource::Group => &[READ, DESCRIBE, DELETE],
        Resource::Cluster => &[
            CREATE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            ALTER,
            DESCRIBE,
        ],
    }
}

/// The bitfield of the operations allowed on `resource` (bit `n` for
/// operation code `n`), or [`NOT_REQUESTED`] when `asked` is false.
pub(crate) fn authorized_operations(resource: Resource, asked: bool) -> i32 {
    if !asked {
        return NOT_REQUESTED;
    }
    supported(resource)
        .iter()
        .fold(0i32, |bits, &op| bits | (1 << op))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_allows_its_eight_operations_and_nothing_is_sent_unasked() {
        let bits = authorized_operations(Resource::Topic, true);
        assert_eq!(bits.count_ones(), 8);
        assert_ne!(bits & (1 << op::READ), 0);
        assert_eq!(bits & (1 << op::CLUSTER_ACTION), 0);
        assert_eq!(authorized_operations(Resource::Group, true).count_ones(), 3);
        assert_eq!(
            authorized_operations(Resource::Cluster, false),
            NOT_REQUESTED
        );
    }
}
