//! A blocking client of the coordinator quorum, for brokers' control
//! threads, the CLI and tests.
//!
//! Proposals carry the client's id and a sequence number. A proposal whose
//! answer was lost (the leader died, the connection broke) is sent again,
//! to whichever node leads now, with the same sequence number; the state
//! machine applies it once and answers the retry with the first outcome.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::network::{self, ClientError, Request, Response, Status};
use super::state_machine::MetadataDelta;
use crate::metadata::{Command, Outcome, Proposal};

pub struct Client {
    peers: Vec<String>,
    leader: Option<String>,
    id: u64,
    seq: u64,
    /// How long one call keeps retrying.
    pub timeout: Duration,
}

fn client_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Never 0: that id means "no deduplication".
    (nanos ^ (u64::from(std::process::id()) << 32)).max(1)
}

/// One request and its response on a fresh connection.
pub fn call(addr: &str, req: &Request, timeout: Duration) -> io::Result<Response> {
    let sock_addr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&sock_addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    s.write_all(&network::encode(&Request::Hello {
        version: network::PROTOCOL_VERSION,
    })?)?;
    match network::decode::<Response>(&network::read_frame_blocking(&mut s)?)? {
        Response::Hello { .. } => {}
        other => return Err(io::Error::other(format!("handshake refused: {other:?}"))),
    }
    s.write_all(&network::encode(req)?)?;
    network::decode(&network::read_frame_blocking(&mut s)?)
}

impl Client {
    pub fn new(peers: Vec<String>) -> Self {
        Self {
            peers,
            leader: None,
            id: client_id(),
            seq: 0,
            timeout: Duration::from_secs(30),
        }
    }

    /// Proposes a command until a leader applies it (once) or the timeout
    /// passes.
    pub fn propose(&mut self, command: Command) -> io::Result<Outcome> {
        self.seq += 1;
        let req = Request::ClientWrite(Proposal {
            client: self.id,
            seq: self.seq,
            command,
        });
        self.until_leader_answers(&req, |r| match r {
            Response::ClientWrite(r) => Some(r),
            _ => None,
        })
    }

    /// Tells the leader that `broker` (registered at `epoch`) is alive.
    pub fn heartbeat(&mut self, broker: i32, epoch: u64) -> io::Result<()> {
        let req = Request::BrokerHeartbeat { broker, epoch };
        self.until_leader_answers(&req, |r| match r {
            Response::BrokerHeartbeat(r) => Some(r),
            _ => None,
        })
    }

    fn until_leader_answers<T>(
        &mut self,
        req: &Request,
        pick: impl Fn(Response) -> Option<Result<T, ClientError>>,
    ) -> io::Result<T> {
        let deadline = Instant::now() + self.timeout;
        let mut next = 0usize;
        let mut last_err = String::from("no coordinator answered");
        while Instant::now() < deadline {
            let addr = match self.leader.take() {
                Some(a) => a,
                None => {
                    next = (next + 1) % self.peers.len().max(1);
                    match self.peers.get(next) {
                        Some(a) => a.clone(),
                        None => {
                            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no peers"))
                        }
                    }
                }
            };
            match call(&addr, req, Duration::from_secs(5)).map(&pick) {
                Ok(Some(Ok(v))) => {
                    self.leader = Some(addr);
                    return Ok(v);
                }
                Ok(Some(Err(ClientError::NotLeader {
                    leader: Some((_, a)),
                }))) if a != addr => {
                    self.leader = Some(a);
                    continue;
                }
                Ok(Some(Err(ClientError::Refused(why)))) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
                }
                Ok(Some(Err(e))) => last_err = format!("{addr}: {e:?}"),
                Ok(None) => last_err = format!("{addr}: unexpected response"),
                Err(e) => last_err = format!("{addr}: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, last_err))
    }

    /// Metadata after index `since` from any node (followers may answer a
    /// little behind the leader; the next fetch catches up).
    pub fn fetch_metadata(&mut self, since: u64, wait: Duration) -> io::Result<MetadataDelta> {
        let req = Request::FetchMetadata {
            since,
            wait_ms: wait.as_millis().min(30_000) as u32,
        };
        let mut last_err = io::Error::other("no peers");
        for _ in 0..self.peers.len().max(1) {
            let addr = self.leader.clone().or_else(|| self.peers.first().cloned());
            let Some(addr) = addr else { break };
            match call(&addr, &req, wait + Duration::from_secs(5)) {
                Ok(Response::Metadata(d)) => {
                    self.leader = Some(addr);
                    return Ok(d);
                }
                Ok(other) => last_err = io::Error::other(format!("unexpected response {other:?}")),
                Err(e) => last_err = e,
            }
            self.leader = None;
            self.peers.rotate_left(1);
        }
        Err(last_err)
    }

    /// One node's view of the quorum.
    pub fn status(addr: &str) -> io::Result<Status> {
        match call(addr, &Request::Status, Duration::from_secs(5))? {
            Response::Status(s) => Ok(*s),
            other => Err(io::Error::other(format!("unexpected response {other:?}"))),
        }
    }
}
