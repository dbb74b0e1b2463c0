//! The transport between coordinator nodes, and between clients (brokers,
//! the CLI) and coordinators.
//!
//! ## Framing
//! Every message is `length u32 BE | payload`, the payload a
//! postcard-encoded [`Request`] or [`Response`]; a length above
//! [`FRAME_BYTES_MAX`] closes the connection before anything is allocated.
//! The first request on a connection must be `Hello` with the protocol
//! version; anything else, or a payload that does not decode, is answered
//! with `Response::Error` and the connection is closed. Nothing a peer sends
//! can panic the node.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::TypeConfig;
use crate::metadata::{Outcome, Proposal};

/// Largest frame accepted. openraft's snapshot chunks are 3 MiB and its
/// append batches far smaller; with at most `connections_max` (64)
/// connections a node holds at most 1 GiB of frames at once.
pub const FRAME_BYTES_MAX: usize = 16 << 20;
/// Version of this protocol, sent in the first frame.
pub const PROTOCOL_VERSION: u16 = 1;

type NodeId = u64;

#[derive(Serialize, Deserialize, Debug)]
pub enum Request {
    Hello {
        version: u16,
    },
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Propose a command (clients).
    ClientWrite(Proposal),
    /// A broker's liveness heartbeat (answered by the leader).
    BrokerHeartbeat {
        broker: i32,
        epoch: u64,
    },
    Status,
    /// Metadata after index `since`; waits up to `wait_ms` for a change
    /// when there is none yet (a long poll).
    FetchMetadata {
        since: u64,
        wait_ms: u32,
    },
}

/// Why a client request was not served.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// Ask the leader, if one is known: its id and address.
    NotLeader { leader: Option<(NodeId, String)> },
    /// Worth retrying elsewhere or later (no leader yet, a failover).
    Unavailable(String),
    /// Final: retrying cannot help (a stale broker epoch, say).
    Refused(String),
}

/// The quorum as one node sees it (DescribeQuorum-like).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub state: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub voters: Vec<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Entries up to here are gone from the log (a node behind them can only
    /// catch up by snapshot).
    pub purged_index: Option<u64>,
    /// Leader only: the last log index each node is known to hold.
    pub replication: BTreeMap<NodeId, Option<u64>>,
    /// CRC-32C of the encoded metadata state: equal on nodes with equal state.
    pub state_digest: u32,
    pub brokers: usize,
    pub live_brokers: usize,
    pub topics: usize,
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Response {
    Hello {
        version: u16,
    },
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    ClientWrite(Result<Outcome, ClientError>),
    BrokerHeartbeat(Result<(), ClientError>),
    Status(Box<Status>),
    Metadata(super::state_machine::MetadataDelta),
    Error(String),
}

pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let payload = postcard::to_allocvec(msg).map_err(io::Error::other)?;
    if payload.len() > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message larger than a frame",
        ));
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> io::Result<T> {
    postcard::from_bytes(payload).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Reads one frame's payload, refusing oversized lengths before allocating.
pub async fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Blocking counterpart of [`read_frame`], for clients.
pub fn read_frame_blocking(s: &mut std::net::TcpStream) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// A connection to one peer, for openraft's RPCs.
pub struct Network {
    target: NodeId,
    addr: String,
    conn: Option<TcpStream>,
}

impl Network {
    async fn call(&mut self, req: &Request, ttl: Duration) -> io::Result<Response> {
        let frame = encode(req)?;
        let result = tokio::time::timeout(ttl, async {
            if self.conn.is_none() {
                let mut s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                s.write_all(&encode(&Request::Hello {
                    version: PROTOCOL_VERSION,
                })?)
                .await?;
                match decode::<Response>(&read_frame(&mut s).await?)? {
                    Response::Hello { .. } => {}
                    other => return Err(io::Error::other(format!("handshake refused: {other:?}"))),
                }
                self.conn = Some(s);
            }
            let s = self.conn.as_mut().expect("connected above");
            s.write_all(&frame).await?;
            decode::<Response>(&read_frame(s).await?)
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "RPC timed out")));
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

fn unreachable<E: std::error::Error>(e: io::Error) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&e))
}

fn unexpected<E: std::error::Error>(r: Response) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::other(format!(
        "unexpected response {r:?}"
    ))))
}

impl Network {
    /// Sends `req` and takes openraft's answer out of the response `pick`
    /// expects; a remote error, an unexpected response and an unreachable
    /// peer become the RPC errors openraft retries on.
    async fn rpc<T, E: std::error::Error>(
        &mut self,
        req: Request,
        option: RPCOption,
        pick: impl FnOnce(Response) -> Result<Result<T, E>, Box<Response>>,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>> {
        match self.call(&req, option.hard_ttl()).await {
            Ok(r) => match pick(r) {
                Ok(answer) => {
                    answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
                }
                Err(other) => Err(unexpected(*other)),
            },
            Err(e) => Err(unreachable(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Request::AppendEntries(rpc), option, |r| match r {
            Response::AppendEntries(a) => Ok(a),
            other => Err(Box::new(other)),
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc(Request::InstallSnapshot(rpc), option, |r| match r {
            Response::InstallSnapshot(a) => Ok(a),
            other => Err(Box::new(other)),
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.rpc(Request::Vote(rpc), option, |r| match r {
            Response::Vote(a) => Ok(a),
            other => Err(Box::new(other)),
        })
        .await
    }
}

/// Makes [`Network`]s for openraft.
pub struct NetworkFactory;

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}
