//! How a broker learns cluster metadata.
//!
//! A subscriber thread long-polls the quorum for everything after the last
//! index its copy applied: it receives either the proposals applied since
//! (and applies them with the same state machine code, so its copy equals
//! the coordinators') or, when it is too far behind, a whole snapshot. After
//! each answer it publishes its copy as one immutable image: shards read the
//! current image without locks (`ArcSwap::load`), and never see a
//! half-applied change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::client::Client;
use super::state_machine::MetadataDelta;
use crate::metadata::{snapshot, MetadataState};

/// The image shards read.
pub type Image = Arc<ArcSwap<MetadataState>>;

pub struct Subscriber {
    pub image: Image,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    /// Starts following the quorum at `coordinators`.
    pub fn start(coordinators: Vec<String>) -> std::io::Result<Self> {
        let image: Image = Arc::new(ArcSwap::from_pointee(MetadataState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (img, st) = (image.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sluice-metadata".into())
            .spawn(move || follow(coordinators, img, st))?;
        Ok(Self {
            image,
            stop,
            thread: Some(thread),
        })
    }

    /// The current image.
    pub fn current(&self) -> Arc<MetadataState> {
        self.image.load_full()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(coordinators: Vec<String>, image: Image, stop: Arc<AtomicBool>) {
    let mut client = Client::new(coordinators);
    let mut state = MetadataState::default();
    while !stop.load(Ordering::Acquire) {
        match client.fetch_metadata(state.last_applied, Duration::from_millis(500)) {
            Ok(MetadataDelta::UpToDate { .. }) => {}
            Ok(MetadataDelta::Records(records)) => {
                for (index, proposal) in &records {
                    state.apply_proposal(*index, proposal);
                }
                image.store(Arc::new(state.clone()));
            }
            Ok(MetadataDelta::Snapshot(bytes)) => match snapshot::decode(&bytes) {
                Ok(s) => {
                    state = s;
                    image.store(Arc::new(state.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "refused a malformed metadata snapshot"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "metadata fetch failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
