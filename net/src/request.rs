//! A request as handlers receive it, and the shape of a handler: what
//! every handler and the dispatch table share.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};

use crate::ctx::Ctx;
use crate::response::{self, Response};

/// What a request's task answers: `Ok(None)`, no response is due;
/// `Err`, close the connection.
pub(crate) type Answer = std::io::Result<Option<Response>>;

/// A handler's second phase: the answer.
pub(crate) type Answering = Pin<Box<dyn Future<Output = Answer>>>;

/// A handler's first phase, whose output is its second (see `dispatch`).
pub(crate) type Serving = Pin<Box<dyn Future<Output = Answering>>>;

/// A handler.
pub(crate) type Serve = fn(Rc<Ctx>, Request) -> Serving;

/// A decoded request, as handlers receive it.
pub(crate) struct Request {
    pub reply: Reply,
    pub header: RequestHeader,
    /// Kafka's form of the client's host (`/1.2.3.4`), for DescribeGroups.
    pub client_host: Rc<str>,
    pub body: RequestKind,
}

/// What an answer needs of its request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reply {
    pub key: ApiKey,
    pub version: i16,
    pub correlation: i32,
}

impl Reply {
    /// Encodes `response` as the answer.
    pub(crate) fn answer(self, response: ResponseKind) -> Answer {
        response::encode(self.key, self.version, self.correlation, response).map(Some)
    }
}

/// A handler whose whole work is its second phase.
#[allow(clippy::async_yields_async)] // the first phase yields the second
pub(crate) fn answer_later(work: impl Future<Output = Answer> + 'static) -> Serving {
    Box::pin(async move { Box::pin(work) as Answering })
}

/// The error for a body that is not the request its key names; decoding
/// by the same key makes this unreachable, and it closes the connection.
pub(crate) fn mismatch(key: ApiKey) -> std::io::Error {
    bad(format!("{key:?}: the body is another request's"))
}

/// The body of a request of variant `$v`, or the caller returns
/// [`mismatch`]. Moves only the body out of the request.
macro_rules! body {
    ($req:expr, $v:ident) => {
        match $req.body {
            kafka_protocol::messages::RequestKind::$v(r) => r,
            _ => return Err($crate::request::mismatch($req.reply.key)),
        }
    };
}
pub(crate) use body;

pub(crate) fn bad(why: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.into())
}
