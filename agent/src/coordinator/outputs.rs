//! The coordinator's writer of recording outputs, on the runtime (never on
//! the driver's thread): manifests as they change, and the stitched outputs
//! of recordings in Finalizing. Manifests are coalesced per recording (the
//! latest wins) and retried while the store is away; finalizations run one
//! at a time (ffmpeg is the heaviest thing a coordinator does) and answer
//! the driver with `Cmd::Finalized`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use recfleet_protocol::manifest::Manifest;
use recfleet_protocol::spec::RecordingSpec;
use recfleet_protocol::RecordingId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::cmd::{Cmd, FleetTx};
use crate::output::destination::Destination;
use crate::output::finalize::{finalize, FinalizeOptions, MANIFEST_KEY};

/// Jobs waiting for the writer, at most.
pub const OUTPUT_QUEUE: usize = 4096;
/// A manifest that could not be written is tried again after this.
const MANIFEST_RETRY: Duration = Duration::from_secs(5);

/// What the driver asks of the writer.
#[derive(Debug)]
pub enum OutputJob {
    /// Write `manifest.json` (already serialized).
    Manifest {
        /// The recording.
        id: RecordingId,
        /// Destination URL.
        destination: String,
        /// The recording's directory in it.
        dir: String,
        /// The JSON.
        json: Bytes,
    },
    /// Make recording.mp4 and index.m3u8.
    Finalize {
        /// The recording's spec.
        spec: Box<RecordingSpec>,
        /// Its manifest with the chunks the store knows.
        manifest: Box<Manifest>,
    },
}

/// The driver's side: jobs are offered, never awaited (the driver is not
/// async); a full queue drops a manifest (a later one supersedes it) and a
/// finalization (the core asks again while the recording is in Finalizing).
#[derive(Debug, Clone)]
pub struct OutputTx(mpsc::Sender<OutputJob>);

impl OutputTx {
    /// Offers a job; false if the queue is full or the writer is gone.
    pub fn offer(&self, job: OutputJob) -> bool {
        self.0.try_send(job).is_ok()
    }
}

/// Starts the writer; `work_root` holds the temporary files of
/// finalizations.
pub fn spawn(
    fleet: FleetTx,
    work_root: PathBuf,
    options: FinalizeOptions,
    shutdown: CancellationToken,
) -> (OutputTx, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
    let writer = Writer {
        fleet,
        work_root,
        options,
        destinations: HashMap::new(),
        manifests: BTreeMap::new(),
        finalizing: HashSet::new(),
        queue: VecDeque::new(),
    };
    let task = tokio::spawn(writer.run(rx, shutdown));
    (OutputTx(tx), task)
}

struct Writer {
    fleet: FleetTx,
    work_root: PathBuf,
    options: FinalizeOptions,
    destinations: HashMap<String, Destination>,
    /// Latest manifest per recording not yet written.
    manifests: BTreeMap<RecordingId, (String, String, Bytes)>,
    /// Recordings queued or being finalized (a repeated ask is ignored).
    finalizing: HashSet<RecordingId>,
    queue: VecDeque<(Box<RecordingSpec>, Box<Manifest>)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<OutputJob>, shutdown: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::channel::<RecordingId>(1);
        let mut busy = false;
        let mut retry = tokio::time::interval(MANIFEST_RETRY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                job = rx.recv() => match job {
                    None => break,
                    Some(job) => self.take(job),
                },
                Some(id) = done_rx.recv() => {
                    self.finalizing.remove(&id);
                    busy = false;
                }
                _ = retry.tick() => {}
            }
            // Manifests first: they are small and say where things are.
            self.write_manifests().await;
            if !busy {
                if let Some((spec, manifest)) = self.queue.pop_front() {
                    busy = true;
                    self.start_finalize(spec, manifest, done_tx.clone());
                }
            }
        }
        // Last chance for what is pending; then the next start finishes it.
        let _ = tokio::time::timeout(Duration::from_secs(3), self.write_manifests()).await;
    }

    fn take(&mut self, job: OutputJob) {
        match job {
            OutputJob::Manifest {
                id,
                destination,
                dir,
                json,
            } => {
                self.manifests.insert(id, (destination, dir, json));
            }
            OutputJob::Finalize { spec, manifest } => {
                if self.finalizing.insert(spec.id.clone()) {
                    self.queue.push_back((spec, manifest));
                }
            }
        }
    }

    fn destination(&mut self, url: &str) -> Result<Destination, String> {
        if let Some(d) = self.destinations.get(url) {
            return Ok(d.clone());
        }
        let d = Destination::open(url).map_err(|e| e.to_string())?;
        self.destinations.insert(url.to_string(), d.clone());
        Ok(d)
    }

    async fn write_manifests(&mut self) {
        let pending = std::mem::take(&mut self.manifests);
        for (id, (url, dir, json)) in pending {
            let result = match self.destination(&url) {
                Ok(d) => d
                    .put(&dir, MANIFEST_KEY, json.clone())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::debug!(recording = %id, "manifest written"),
                Err(e) => {
                    tracing::warn!(recording = %id, destination = %url, error = %e, "cannot write the manifest; will retry");
                    // Unless a newer one arrived meanwhile, this one is retried.
                    self.manifests.entry(id).or_insert((url, dir, json));
                }
            }
        }
    }

    fn start_finalize(
        &mut self,
        spec: Box<RecordingSpec>,
        manifest: Box<Manifest>,
        done: mpsc::Sender<RecordingId>,
    ) {
        let url = spec.destination.clone().unwrap_or_default();
        let dest = self.destination(&url);
        let fleet = self.fleet.clone();
        let options = self.options.clone();
        let work = self.work_root.join(spec.id.as_str());
        tokio::spawn(async move {
            let id = spec.id.clone();
            let started = std::time::Instant::now();
            let result = match dest {
                Ok(dest) => finalize(&dest, &spec, &manifest, &work, &options)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("destination {url}: {e}")),
            };
            match result {
                Ok((outputs, stored)) => {
                    tracing::info!(
                        recording = %id,
                        secs = started.elapsed().as_secs_f64(),
                        error = outputs.error.as_deref().unwrap_or(""),
                        "outputs finalized"
                    );
                    let cmd = Cmd::Finalized {
                        id: id.clone(),
                        outputs,
                        stored,
                    };
                    if fleet.send(cmd).await.is_err() {
                        tracing::warn!(recording = %id, "the fleet is gone; finalized again at the next start");
                    }
                }
                // The recording stays in Finalizing; the fleet asks again
                // within a minute.
                Err(e) => tracing::warn!(
                    recording = %id, error = %e,
                    "cannot finalize now (the store failed); trying again within a minute"
                ),
            }
            let _ = done.send(id).await;
        });
    }
}
