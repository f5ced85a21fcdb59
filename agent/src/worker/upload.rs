//! Chunks leave the worker as soon as they close. ffmpeg writes each part
//! as HLS fMP4 chunks in a local directory and lists a chunk in its
//! `local.m3u8` once the chunk is complete; a watcher per part uploads what
//! is listed, in order, tells the coordinator (`ChunkStored`) and deletes
//! the local copy once the store has confirmed it. A slow or absent store
//! never stops a recording: chunks wait on disk, uploads are retried with
//! backoff, and the lag and the buffer are reported.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use recfleet_protocol::{
    now_ms, Chunk, ChunkReport, Epoch, RecordingId, SlotProgress, WorkerMessage,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::event_track::chunk_number;
use crate::output::destination::Destination;
use crate::output::events;
use crate::output::finalize::{hex, segment_dir};
use crate::output::hls::parse_local_playlist;
use recfleet_protocol::events::EVENT_CHUNKS_DIR;

/// ffmpeg's playlist of complete chunks, in the part's local directory.
pub const LOCAL_PLAYLIST: &str = "local.m3u8";
/// The one file of an external capture (uploaded whole at the part's end).
pub const CAPTURE_FILE: &str = "capture.mp4";
/// How often the local playlist is read: a closed chunk waits at most this
/// long before its upload starts (what a kill of the worker can lose on
/// top of the chunk being written).
const SCAN_EVERY: Duration = Duration::from_millis(100);
/// While uploads wait for a retry, the buffer and the lag are updated this
/// often.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Upload settings of a worker.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Bytes of closed chunks the worker keeps on disk before it reports
    /// its buffer full (recordings go on; the chunks stay on disk).
    pub buffer_limit_bytes: u64,
    /// A part's last uploads are given up after this long (the chunks stay
    /// on disk and the part's report says so).
    pub retry_window: Duration,
    /// Destination of recordings whose spec names none (a spec from the
    /// coordinator always names one).
    pub default_destination: String,
}

/// The worker's uploads: one shared buffer account, and one watcher per
/// running part.
#[derive(Debug, Clone)]
pub struct Uploader {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: UploadConfig,
    /// The worker is stopping: a part's last uploads are given
    /// [`SHUTDOWN_GRACE`], not the retry window.
    stopping: AtomicBool,
    pending_bytes: AtomicU64,
    full: AtomicBool,
    destinations: Mutex<HashMap<String, Destination>>,
}

/// While the worker stops, a part's last uploads get this long; what the
/// store did not take stays on disk and is uploaded at the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Where the slot puts a part's process logs when it ends (uploaded with
/// the part, see [`Watcher::store_logs`]).
pub const LOGS_DIR: &str = "logs";
/// A part's logs are stored within this, or not at all.
const LOGS_WITHIN: Duration = Duration::from_secs(10);
/// Beside a part's chunks: who they belong to, so that a later run of the
/// worker can upload what this one could not.
const PART_FILE: &str = "part.json";

/// Who a part is.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartId {
    /// The recording.
    pub recording: RecordingId,
    /// Its directory in the destination.
    pub dir: String,
    /// The destination URL (None: the worker's default).
    pub destination: Option<String>,
    /// Placement.
    pub epoch: Epoch,
    /// Part.
    pub part: u32,
}

/// What a part's uploads came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Bytes stored (init and chunks, or the capture file).
    pub bytes: u64,
    /// SHA-256 of what was stored, as one file, hex.
    pub sha256: String,
    /// Objects that could not be stored within the retry window.
    pub left_behind: u32,
}

/// One part's watcher.
#[derive(Debug)]
pub struct PartUpload {
    ended: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Uploaded>,
    stored_bytes: Arc<AtomicU64>,
}

impl PartUpload {
    /// The counter of bytes stored so far (shared with the part).
    pub fn stored_bytes_counter(&self) -> Arc<AtomicU64> {
        self.stored_bytes.clone()
    }

    /// The part's processes are gone: upload what is left and return the
    /// totals (within the retry window).
    pub async fn finish(self) -> Uploaded {
        let _ = self.ended.send(true);
        self.task.await.unwrap_or_default()
    }
}

impl Uploader {
    /// A worker's uploader.
    pub fn new(config: UploadConfig) -> Self {
        Uploader {
            shared: Arc::new(Shared {
                config,
                stopping: AtomicBool::new(false),
                pending_bytes: AtomicU64::new(0),
                full: AtomicBool::new(false),
                destinations: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Uses `dest` for its URL (opened elsewhere, e.g. with credentials
    /// not in this process's environment) instead of opening it.
    pub fn use_destination(&self, dest: Destination) {
        self.shared
            .destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(dest.url().to_string(), dest);
    }

    /// The worker is stopping (see [`SHUTDOWN_GRACE`]).
    pub fn shutting_down(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
    }

    /// Starts uploading the parts a previous run left under `root` (it was
    /// killed, or stopped while the store was away); their `ChunkStored`
    /// reports go to `events` like any other. Returns how many.
    pub fn resume_leftovers(
        &self,
        root: &Path,
        events: mpsc::UnboundedSender<WorkerMessage>,
    ) -> usize {
        let mut found = Vec::new();
        find_part_files(&root.join(".upload"), 0, &mut found);
        let n = found.len();
        for file in found {
            let Some(dir) = file.parent().map(Path::to_path_buf) else {
                continue;
            };
            let id: PartId = match std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(id) => id,
                None => {
                    tracing::warn!(file = %file.display(), "unreadable part file; its chunks stay on disk");
                    continue;
                }
            };
            tracing::info!(recording = %id.recording, epoch = %id.epoch, part = id.part, "resuming uploads");
            let external = dir.join(CAPTURE_FILE).is_file();
            let progress = Arc::new(Mutex::new(SlotProgress::default()));
            let upload = self.start_part(id, dir, external, progress, events.clone());
            tokio::spawn(upload.finish());
        }
        n
    }

    /// Bytes waiting on disk, and whether that is over the limit.
    pub fn buffer(&self) -> (u64, bool) {
        (
            self.shared.pending_bytes.load(Ordering::Relaxed),
            self.shared.full.load(Ordering::Relaxed),
        )
    }

    /// The local directory of a part's chunks under `root`. In a hidden
    /// `.upload` folder: a `file://` destination may be the same directory
    /// as the buffer (one machine), and its objects must never be taken
    /// for chunks waiting to be uploaded.
    pub fn local_dir(root: &Path, id: &PartId) -> PathBuf {
        root.join(".upload")
            .join(&id.dir)
            .join(segment_dir(id.epoch, id.part))
    }

    /// Starts watching `local` for the chunks of a part. `external`: the
    /// part is one file written by an external capture, uploaded at its end.
    pub fn start_part(
        &self,
        id: PartId,
        local: PathBuf,
        external: bool,
        progress: Arc<Mutex<SlotProgress>>,
        events: mpsc::UnboundedSender<WorkerMessage>,
    ) -> PartUpload {
        let (ended_tx, ended_rx) = watch::channel(false);
        let stored_bytes = Arc::new(AtomicU64::new(0));
        let written = std::fs::create_dir_all(&local).and_then(|()| {
            let json = serde_json::to_vec(&id).map_err(std::io::Error::other)?;
            std::fs::write(local.join(PART_FILE), json)
        });
        if let Err(e) = written {
            tracing::warn!(dir = %local.display(), error = %e, "cannot write the part file: a restart could not resume its uploads");
        }
        let watcher = Watcher {
            shared: self.shared.clone(),
            id,
            local,
            external,
            progress,
            events,
            stored_bytes: stored_bytes.clone(),
            hash: Sha256::new(),
            total: 0,
            next: 0,
            init_done: false,
            next_event: 0,
            seen_at: HashMap::new(),
            pending: HashMap::new(),
        };
        let task = tokio::spawn(watcher.run(ended_rx));
        PartUpload {
            ended: ended_tx,
            task,
            stored_bytes,
        }
    }

    fn destination(&self, url: &str) -> Result<Destination, String> {
        let mut map = self
            .shared
            .destinations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(d) = map.get(url) {
            return Ok(d.clone());
        }
        let d = Destination::open(url).map_err(|e| e.to_string())?;
        map.insert(url.to_string(), d.clone());
        Ok(d)
    }
}

/// One object to store.
#[derive(Debug, Clone)]
struct Item {
    /// Its file, relative to the part's directory.
    name: String,
    seq: Option<u32>,
    media_start_ms: u64,
    duration_ms: u64,
    /// An event chunk (its number), not media: stored under `events/`,
    /// outside the segment's bytes and checksum.
    event_chunk: Option<u32>,
}

struct Watcher {
    shared: Arc<Shared>,
    id: PartId,
    local: PathBuf,
    external: bool,
    progress: Arc<Mutex<SlotProgress>>,
    events: mpsc::UnboundedSender<WorkerMessage>,
    stored_bytes: Arc<AtomicU64>,
    /// Running hash of everything stored, in order: the segment as one file.
    hash: Sha256,
    total: u64,
    /// Next chunk number to store.
    next: u32,
    init_done: bool,
    /// Next event chunk number to store.
    next_event: u32,
    /// When each waiting object was first seen complete (lag).
    seen_at: HashMap<String, u64>,
    /// Sizes of objects counted in the buffer.
    pending: HashMap<String, u64>,
}

impl Watcher {
    async fn run(mut self, mut ended: watch::Receiver<bool>) -> Uploaded {
        let url = self
            .id
            .destination
            .clone()
            .unwrap_or_else(|| self.shared.config.default_destination.clone());
        let uploader = Uploader {
            shared: self.shared.clone(),
        };
        let mut attempt = 0u32;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        let mut stop_at: Option<tokio::time::Instant> = None;
        loop {
            let over = *ended.borrow();
            let (items, complete) = self.scan(over);
            let mut failed = false;
            if !items.is_empty() {
                match uploader.destination(&url) {
                    Ok(dest) => {
                        for item in items {
                            if let Err(e) = self.store(&dest, &item).await {
                                tracing::warn!(
                                    recording = %self.id.recording, object = %item.name,
                                    destination = %url, error = %e, attempt,
                                    "upload failed; the chunk waits on disk"
                                );
                                failed = true;
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(recording = %self.id.recording, destination = %url, error = %e, "cannot open the destination");
                        failed = true;
                    }
                }
            }
            self.report_lag();
            if over && complete && !failed {
                break;
            }
            if over {
                let now = tokio::time::Instant::now();
                let limit =
                    *give_up_at.get_or_insert_with(|| now + self.shared.config.retry_window);
                let limit = match self.shared.stopping.load(Ordering::Relaxed) {
                    true => limit.min(*stop_at.get_or_insert(now + SHUTDOWN_GRACE)),
                    false => limit,
                };
                if now >= limit {
                    tracing::error!(
                        recording = %self.id.recording, epoch = %self.id.epoch, part = self.id.part,
                        left = self.pending.len(), dir = %self.local.display(),
                        "uploads given up for now; the chunks stay on disk for the next start"
                    );
                    break;
                }
            }
            if !failed {
                attempt = 0;
                tokio::select! {
                    _ = tokio::time::sleep(SCAN_EVERY) => {}
                    _ = ended.changed(), if !over => {}
                }
                continue;
            }
            attempt += 1;
            let pause = crate::backoff::delay(
                attempt - 1,
                Duration::from_millis(500),
                Duration::from_secs(15),
                fastrand::f64(),
            );
            // Waiting (a backoff may last 15 s): new chunks are still
            // counted in the buffer and the lag keeps growing where the
            // coordinator sees it.
            let until = tokio::time::Instant::now() + pause;
            loop {
                let step = until
                    .saturating_duration_since(tokio::time::Instant::now())
                    .min(REPORT_EVERY);
                if step.is_zero() {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = ended.changed(), if !over => break,
                }
                let _ = self.scan(over);
                self.report_lag();
            }
        }
        if self.pending.is_empty() {
            // Logs are a courtesy: a slow store does not hold up the part's
            // end (and its slot) for them.
            let logs = self.store_logs(&uploader, &url);
            if tokio::time::timeout(LOGS_WITHIN, logs).await.is_err() {
                tracing::debug!(recording = %self.id.recording, "process logs not stored in time");
            }
        }
        let left_behind = self.pending.len() as u32;
        for size in self.pending.values() {
            self.shared
                .pending_bytes
                .fetch_sub(*size, Ordering::Relaxed);
        }
        self.pending.clear();
        self.account();
        if left_behind == 0 {
            let _ = std::fs::remove_dir_all(&self.local);
            // And the recording's folders above it once they are empty
            // (remove_dir refuses a folder that is not).
            let mut dir = self.local.parent();
            while let Some(d) = dir {
                if d.file_name().is_some_and(|n| n == ".upload") || std::fs::remove_dir(d).is_err()
                {
                    break;
                }
                dir = d.parent();
            }
        }
        Uploaded {
            bytes: self.total,
            sha256: hex(&std::mem::take(&mut self.hash).finalize()),
            left_behind,
        }
    }

    /// What is complete and not stored yet, in order; and whether the part
    /// is complete (ffmpeg ended its playlist, or the capture is over).
    fn scan(&mut self, over: bool) -> (Vec<Item>, bool) {
        let mut items = Vec::new();
        if self.external {
            // An external capture's file is complete only when it is over.
            if over && !self.init_done && self.local.join(CAPTURE_FILE).is_file() {
                items.push(Item {
                    name: CAPTURE_FILE.into(),
                    seq: None,
                    media_start_ms: 0,
                    duration_ms: 0,
                    event_chunk: None,
                });
            }
            self.track(&items);
            return (items, true);
        }
        let text = std::fs::read_to_string(self.local.join(LOCAL_PLAYLIST)).unwrap_or_default();
        let playlist = parse_local_playlist(&text);
        if !self.init_done {
            if let Some(init) = &playlist.init {
                items.push(Item {
                    name: init.clone(),
                    seq: None,
                    media_start_ms: 0,
                    duration_ms: 0,
                    event_chunk: None,
                });
            }
        }
        let mut at = 0u64;
        for (n, (name, duration_ms)) in playlist.chunks.iter().enumerate() {
            let seq = n as u32;
            if seq >= self.next {
                items.push(Item {
                    name: name.clone(),
                    seq: Some(seq),
                    media_start_ms: at,
                    duration_ms: *duration_ms,
                    event_chunk: None,
                });
            }
            at += duration_ms;
        }
        items.extend(self.event_chunks());
        self.track(&items);
        // A killed ffmpeg never ends its playlist: what it listed is all
        // there will be (the chunk it was writing is lost, at most 2 s).
        (items, playlist.ended || over)
    }

    /// The part's event chunks not stored yet, in order (the slot writes
    /// each whole under a final name).
    fn event_chunks(&self) -> Vec<Item> {
        let Ok(dir) = std::fs::read_dir(self.local.join(EVENT_CHUNKS_DIR)) else {
            return Vec::new();
        };
        let mut found: Vec<u32> = dir
            .flatten()
            .filter_map(|e| chunk_number(e.file_name().to_str()?))
            .filter(|n| *n >= self.next_event)
            .collect();
        found.sort_unstable();
        found
            .into_iter()
            .map(|n| Item {
                name: format!("{EVENT_CHUNKS_DIR}/{n:05}.jsonl"),
                seq: None,
                media_start_ms: 0,
                duration_ms: 0,
                event_chunk: Some(n),
            })
            .collect()
    }

    /// Counts newly seen objects in the buffer.
    fn track(&mut self, items: &[Item]) {
        let now = now_ms();
        for it in items {
            if !self.pending.contains_key(&it.name) {
                let size = std::fs::metadata(self.local.join(&it.name))
                    .map(|m| m.len())
                    .unwrap_or(0);
                self.pending.insert(it.name.clone(), size);
                self.shared.pending_bytes.fetch_add(size, Ordering::Relaxed);
                self.seen_at.insert(it.name.clone(), now);
            }
        }
        self.account();
    }

    fn account(&self) {
        let pending = self.shared.pending_bytes.load(Ordering::Relaxed);
        let full = pending > self.shared.config.buffer_limit_bytes;
        if self.shared.full.swap(full, Ordering::Relaxed) != full {
            if full {
                tracing::warn!(
                    pending_bytes = pending,
                    limit = self.shared.config.buffer_limit_bytes,
                    "upload buffer full: the store is slow or away; chunks wait on disk"
                );
            } else {
                tracing::info!(
                    pending_bytes = pending,
                    "upload buffer below its limit again"
                );
            }
        }
    }

    fn report_lag(&self) {
        let now = now_ms();
        let lag = self
            .seen_at
            .values()
            .map(|at| now.saturating_sub(*at))
            .max()
            .unwrap_or(0);
        if let Ok(mut p) = self.progress.lock() {
            if p.epoch == self.id.epoch {
                p.upload_lag_ms = lag;
            }
        }
    }

    /// The part's process logs (put in `logs/` by the slot when the part
    /// ended) go beside the recording, `logs/e<E>-p<P>/<name>.log`, once:
    /// best effort, they never hold up the part's end.
    async fn store_logs(&self, uploader: &Uploader, url: &str) {
        let Ok(entries) = std::fs::read_dir(self.local.join(LOGS_DIR)) else {
            return;
        };
        let Ok(dest) = uploader.destination(url) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let key = format!("logs/e{}-p{}/{name}", self.id.epoch.0, self.id.part);
            let stored = dest.put_file(&self.id.dir, &key, &path).await;
            if let Err(e) = stored {
                tracing::debug!(recording = %self.id.recording, log = %name, error = %e, "log not stored");
            }
        }
    }

    async fn store(&mut self, dest: &Destination, item: &Item) -> Result<(), String> {
        let path = self.local.join(&item.name);
        let data = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(n) = item.event_chunk {
            let segment = events::segment_name(self.id.epoch.0, self.id.part);
            dest.put(
                &self.id.dir,
                &events::chunk_key(&segment, n),
                Bytes::from(data),
            )
            .await
            .map_err(|e| e.to_string())?;
            if let Some(size) = self.pending.remove(&item.name) {
                self.shared.pending_bytes.fetch_sub(size, Ordering::Relaxed);
            }
            self.seen_at.remove(&item.name);
            self.account();
            self.next_event = n + 1;
            let _ = tokio::fs::remove_file(&path).await;
            return Ok(());
        }
        let key = format!("{}/{}", segment_dir(self.id.epoch, self.id.part), item.name);
        let bytes = data.len() as u64;
        let sha256 = hex(&Sha256::digest(&data));
        dest.put(&self.id.dir, &key, Bytes::from(data.clone()))
            .await
            .map_err(|e| e.to_string())?;
        // Stored: it is the store's now.
        self.hash.update(&data);
        self.total += bytes;
        self.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(size) = self.pending.remove(&item.name) {
            self.shared.pending_bytes.fetch_sub(size, Ordering::Relaxed);
        }
        self.seen_at.remove(&item.name);
        self.account();
        match item.seq {
            Some(seq) => self.next = seq + 1,
            None => self.init_done = true,
        }
        let _ = tokio::fs::remove_file(&path).await;
        let _ = self.events.send(WorkerMessage::ChunkStored(ChunkReport {
            recording: self.id.recording.clone(),
            epoch: self.id.epoch,
            part: self.id.part,
            chunk: Chunk {
                seq: item.seq,
                key,
                bytes,
                sha256,
                media_start_ms: item.media_start_ms,
                duration_ms: item.duration_ms,
            },
        }));
        Ok(())
    }
}

/// Every part file under `dir` (a recording's directory may be nested:
/// output directories can have several components).
fn find_part_files(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            find_part_files(&path, depth + 1, out);
        } else if path.file_name().is_some_and(|n| n == PART_FILE) {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dest: &Path) -> UploadConfig {
        UploadConfig {
            buffer_limit_bytes: 1 << 20,
            retry_window: Duration::from_secs(5),
            default_destination: format!("file://{}", dest.display()),
        }
    }

    /// A part directory as ffmpeg and a killed worker leave it: a playlist
    /// of two complete chunks, and a third being written (not listed).
    fn leftover(root: &Path) -> PathBuf {
        let id = PartId {
            recording: RecordingId::new("left").unwrap(),
            dir: "left".into(),
            destination: None,
            epoch: Epoch(3),
            part: 1,
        };
        let dir = Uploader::local_dir(root, &id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PART_FILE), serde_json::to_vec(&id).unwrap()).unwrap();
        std::fs::write(
            dir.join(LOCAL_PLAYLIST),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nc00000.m4s\n#EXTINF:2.000000,\nc00001.m4s\n",
        )
        .unwrap();
        for (name, body) in [
            ("init.mp4", "I"),
            ("c00000.m4s", "AA"),
            ("c00001.m4s", "BBB"),
            ("c00002.m4s", "partial"),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn a_restarted_worker_uploads_what_the_last_run_left_on_disk() {
        let root = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let dir = leftover(root.path());
        let uploader = Uploader::new(config(dest.path()));
        let (tx, mut rx) = mpsc::unbounded_channel();
        assert_eq!(uploader.resume_leftovers(root.path(), tx), 1);
        let mut stored = Vec::new();
        while stored.len() < 3 {
            let msg = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("reports within 10 s")
                .expect("a report");
            if let WorkerMessage::ChunkStored(r) = msg {
                let c = r.chunk;
                stored.push((c.seq, c.key, c.bytes, c.media_start_ms));
            }
        }
        assert_eq!(
            stored,
            vec![
                (None, "segments/e3-p1/init.mp4".to_string(), 1, 0),
                (Some(0), "segments/e3-p1/c00000.m4s".to_string(), 2, 0),
                (Some(1), "segments/e3-p1/c00001.m4s".to_string(), 3, 2000),
            ]
        );
        let seg = dest.path().join("left/segments/e3-p1");
        assert_eq!(std::fs::read(seg.join("c00001.m4s")).unwrap(), b"BBB");
        // The chunk being written when the worker died is not a chunk.
        assert!(!seg.join("c00002.m4s").exists());
        // Everything stored: the local copy is gone, and the buffer is empty.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while dir.exists() && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!dir.exists());
        assert_eq!(uploader.buffer(), (0, false));
    }

    #[tokio::test]
    async fn an_unreachable_store_keeps_the_chunks_and_reports_the_buffer() {
        let root = tempfile::tempdir().unwrap();
        let dir = leftover(root.path());
        // A destination that cannot be written: a file where the directory
        // would be.
        let blocker = tempfile::NamedTempFile::new().unwrap();
        let mut cfg = config(blocker.path());
        cfg.buffer_limit_bytes = 2;
        let uploader = Uploader::new(cfg);
        uploader.shutting_down();
        let (tx, _rx) = mpsc::unbounded_channel();
        uploader.resume_leftovers(root.path(), tx);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (bytes, full) = uploader.buffer();
        assert_eq!(bytes, 6, "init and two chunks wait");
        assert!(full);
        // Given up within the shutdown grace; the chunks are still there
        // for the next start.
        tokio::time::sleep(SHUTDOWN_GRACE + Duration::from_secs(1)).await;
        assert!(dir.join("c00001.m4s").is_file());
        assert!(dir.join(PART_FILE).is_file());
    }
}
